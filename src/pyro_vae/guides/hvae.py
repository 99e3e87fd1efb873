"""The two-layer VAE's bottom-up guide q(z1, z2 | x) = q(z1 | x) q(z2 | z1) (Burda et al. 2016)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule

from pyro_vae.distributions import Event
from pyro_vae.pyro_modules import to_pyro_network_


class TwoLayerGuide(PyroModule):
    """q(z1 | x) = N(loc(x), diag scale(x)^2) (``encoder``, an :class:`~pyro_vae.nn.Encoder`
    on images), then q(z2 | z1) = N(loc(z1), diag scale(z1)^2) (``top_encoder``, a
    :class:`~pyro_vae.nn.LatentEncoder` reading the draw of z1).

    Samples ``z1`` ``[B, L1]`` then ``z2`` ``[B, L2]`` inside ``pyro.plate("data", B)``, the
    model's site names. Both draws are reparameterized, so every objective differentiates
    through them (z2's draw depends on z1's).
    """

    needs_labels = False
    #: Its ``encode`` gives q(z1 | x), whose prior p(z1) = E_p(z2)[p(z1 | z2)] is not N(0, I), as the
    #: model's ``hierarchical`` says: figures that compare codes with N(0, I) refuse it.
    hierarchical = True

    def __init__(self, encoder: torch.nn.Module, top_encoder: torch.nn.Module):
        super().__init__()
        to_pyro_network_(encoder)
        to_pyro_network_(top_encoder)
        self.encoder = encoder
        self.top_encoder = top_encoder

    def forward(self, x: torch.Tensor) -> None:
        loc, scale = self.encoder(x)
        with pyro.plate("data", x.shape[0], device=x.device):
            z1 = pyro.sample("z1", Event(dist.Normal(loc, scale, validate_args=False), 1))
            loc2, scale2 = self.top_encoder(z1)
            pyro.sample("z2", Event(dist.Normal(loc2, scale2, validate_args=False), 1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(z1 | x), each ``[..., L1]``: the code the decoder reads."""
        return self.encoder(x)
