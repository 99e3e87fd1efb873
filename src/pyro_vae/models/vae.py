"""The VAE's generative program p(x, z) = N(z; 0, I) p(x | decoder(z))."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule, to_pyro_module_

from pyro_vae.likelihoods import Likelihood


class VAEModel(PyroModule):
    """p(x, z) = N(z; 0, I_L) p(x | decoder(z)), one z per image.

    Sites: ``z`` (latent, ``[B, L]``) and ``x`` (observed, ``[B, C, H, W]``) inside
    ``pyro.plate("data", B)``. Its guide must sample the same ``z``.
    """

    needs_labels = False

    def __init__(self, decoder: torch.nn.Module, likelihood: Likelihood, latent_dim: int):
        super().__init__()
        to_pyro_module_(decoder)
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = latent_dim

    def prior(self, like: torch.Tensor, batch_size: int) -> dist.TorchDistribution:
        zeros = like.new_zeros(batch_size, self.latent_dim)
        return dist.Normal(zeros, 1.0, validate_args=False).to_event(1)

    def forward(self, x: torch.Tensor) -> None:
        batch_size = x.shape[0]
        with pyro.plate("data", batch_size):
            z = pyro.sample("z", self.prior(x, batch_size))
            pyro.sample("x", self.likelihood.distribution(self.decoder(z)), obs=x)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] for codes ``z`` ``[..., L]`` -> images ``[..., C, H, W]``."""
        return self.likelihood.mean(self.decoder(z))
