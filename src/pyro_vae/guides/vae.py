"""The VAE's amortized guide q(z | x) = N(z; loc(x), diag(scale(x)^2))."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule
from pyro_vae.distributions import FullPlate, DrawNoiseNormal, Event
from pyro_vae.pyro_modules import LeanNetwork, to_pyro_network_


class DiagonalNormalGuide(LeanNetwork, PyroModule):  # LeanNetwork: a step's fixed cost (issue #16)
    """q(z | x) = N(loc(x), diag(scale(x)^2)), the mean-field encoder of Kingma & Welling.

    Samples site ``z`` ``[B, L]`` inside ``pyro.plate("data", B)``, as the model does.
    ``encoder`` maps ``[..., C, H, W]`` images to ``(loc, scale)``, each ``[..., L]``.
    """

    needs_labels = False

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        to_pyro_network_(encoder)
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> None:
        # The encoder has no sample site, so it runs outside the plate: its parameter
        # statements then skip the plate's handlers (a training step's fixed cost).
        loc, scale = self.encoder(x)
        # FullPlate: pyro.plate("data", B) without its subsample statement; DrawNoiseNormal reads
        # log q at its own draw from the draw's noise (both: a step's fixed cost, issue #16).
        with FullPlate("data", x.shape[0], device=x.device):  # device: no look-up of the default one
            pyro.sample("z", Event(DrawNoiseNormal(loc, scale, validate_args=False), 1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(z | x), each ``[..., L]``; ``loc`` is the usual 'code' of x."""
        return self.encoder(x)
