"""The plain autoencoder as a Pyro program: p(x | z) with no prior on the code.

An autoencoder is not a generative model: it has a decoder p(x | z) but no p(z), so it
defines no density p(x) and cannot be sampled. Written as a Pyro model its code ``z`` is a
latent site with an improper flat "prior" (log-density 0 everywhere, never sampled), and its
guide (:class:`~pyro_vae.guides.ae.PointMassGuide`) puts a point mass at the encoder's output.
The ELBO of this pair is then

    log p(x | z = f(x)) + log 1 - log 1 = log p(x | f(x)),

the reconstruction log-likelihood alone (for Bernoulli pixels, minus the binary cross-entropy
of the usual autoencoder), so the trainer, the checkpoints and the figures treat it like any
other (model, guide) pair.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn.module import PyroModule, to_pyro_module_

from pyro_vae.likelihoods import Likelihood


class AEModel(PyroModule):
    """p(x | z) = likelihood(decoder(z)) with a flat improper p(z) (log-density 0).

    Sites: ``z`` (latent, ``[B, L]``, only ever replayed from the guide) and ``x``
    (observed, ``[B, C, H, W]``) inside ``pyro.plate("data", B)``.
    """

    needs_labels = False
    #: No p(z), so no p(x): held-out log-likelihood and the prior check make no sense here.
    has_marginal_likelihood = False

    def __init__(self, decoder: torch.nn.Module, likelihood: Likelihood, latent_dim: int):
        super().__init__()
        to_pyro_module_(decoder)
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = latent_dim

    def prior(self, like: torch.Tensor, batch_size: int) -> dist.TorchDistribution:
        return dist.ImproperUniform(constraints.real, (batch_size,), (self.latent_dim,))

    def forward(self, x: torch.Tensor) -> None:
        batch_size = x.shape[0]
        with pyro.plate("data", batch_size):
            z = pyro.sample("z", self.prior(x, batch_size))
            pyro.sample("x", self.likelihood.distribution(self.decoder(z)), obs=x)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] for codes ``z`` ``[..., L]`` -> images ``[..., C, H, W]``."""
        return self.likelihood.mean(self.decoder(z))
