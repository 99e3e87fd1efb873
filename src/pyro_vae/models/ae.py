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

import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from pyro_vae.models.vae import VAEModel


class AEModel(VAEModel):
    """p(x | z) = likelihood(decoder(z)) with a flat improper p(z) (log-density 0): the VAE's
    program with its prior replaced.

    Sites: ``z`` (latent, ``[B, L]``, only ever replayed from the guide) and ``x``
    (observed, ``[B, C, H, W]``) inside ``pyro.plate("data", B)``. ``sample_prior`` still
    draws N(0, I) codes: an autoencoder has no p(z), and the figures show what its decoder
    makes of the VAE's prior draws.
    """

    #: No p(z), so no p(x): held-out log-likelihood and the prior check make no sense here.
    has_marginal_likelihood = False

    def prior(self, like: torch.Tensor, batch_size: int) -> dist.TorchDistribution:
        return dist.ImproperUniform(constraints.real, (batch_size,), (self.latent_dim,))
