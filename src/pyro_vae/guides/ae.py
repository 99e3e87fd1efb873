"""The autoencoder's guide: a point mass at the encoder's output, Pyro's MAP idiom."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from pyro_vae.distributions import FullPlate
from pyro_vae.guides.vae import DiagonalNormalGuide


class PointMassGuide(DiagonalNormalGuide):
    """q(z | x) = delta(z - loc(x)): the code is the encoder's mean head, deterministically.

    Samples site ``z`` ``[B, L]`` inside ``pyro.plate("data", B)`` as a ``dist.Delta`` (log q
    = 0 at its value, zero entropy), so the ELBO against :class:`~pyro_vae.models.ae.AEModel`
    is the reconstruction term alone. ``encoder`` is the VAE's (``(loc, scale)`` heads); its
    scale head is unused.
    """

    def forward(self, x: torch.Tensor) -> None:
        # FullPlate, as the model's (AEModel is the VAE's program): a pyro.plate here would record a
        # subsample site the model lacks, and Pyro's ELBOs would warn of a guide plate not in the model.
        with FullPlate("data", x.shape[0], device=x.device):
            pyro.sample("z", dist.Delta(self.encoder(x)[0], event_dim=1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(code, 0): the point mass's location and a zero scale, each ``[..., L]``."""
        loc = self.encoder(x)[0]
        return loc, torch.zeros_like(loc)
