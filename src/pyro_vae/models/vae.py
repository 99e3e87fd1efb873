"""The VAE's generative program p(x, z) = p(z) p(x | decoder(z)), p(z) = N(0, I) by default."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule

from pyro_vae.distributions import FullPlate
from pyro_vae.likelihoods import Likelihood
from pyro_vae.models.priors import Prior, StandardNormalPrior
from pyro_vae.pyro_modules import LeanNetwork, to_pyro_network_


class VAEModel(LeanNetwork, PyroModule):  # LeanNetwork: a step's fixed cost (issue #16)
    """p(x, z) = p(z) p(x | decoder(z)), one z per image; p(z) is ``latent_prior``
    (a :class:`~pyro_vae.models.priors.Prior`, N(0, I_L) by default).

    Sites: ``z`` (latent, ``[B, L]``) and ``x`` (observed, ``[B, C, H, W]``) inside
    ``pyro.plate("data", B)``. Its guide must sample the same ``z``.
    """

    needs_labels = False

    def __init__(self, decoder: torch.nn.Module, likelihood: Likelihood, latent_dim: int,
                 latent_prior: Prior | None = None):
        super().__init__()
        to_pyro_network_(decoder)
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = latent_dim
        self.latent_prior = latent_prior if latent_prior is not None else StandardNormalPrior(latent_dim)

    def prior(self, like: torch.Tensor, batch_size: int) -> dist.TorchDistribution:
        """p(z) with batch shape ``[batch_size]`` (dtype and device of ``like``)."""
        return self.latent_prior.distribution(like, batch_size)

    def sample_prior(self, n: int) -> torch.Tensor:
        """``n`` codes z ~ p(z), ``[n, L]``, on the decoder's device."""
        return self.latent_prior.sample(n, next(self.decoder.parameters()))

    def forward(self, x: torch.Tensor) -> None:
        batch_size = x.shape[0]
        # pyro.plate("data", B) without its subsample statement (a step's fixed cost, issue #16)
        with FullPlate("data", batch_size, device=x.device):  # device: no look-up of the default one
            z = pyro.sample("z", self.prior(x, batch_size))
            pyro.sample("x", self.likelihood.distribution(self.decoder(z)), obs=x)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] for codes ``z`` ``[..., L]`` -> images ``[..., C, H, W]``."""
        return self.likelihood.mean(self.decoder(z))
