"""The conditional VAE's guide q(z | x, y)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule
from pyro_vae.pyro_modules import to_pyro_network_
from torch.nn import functional as F


class ConditionalNormalGuide(PyroModule):
    """q(z | x, y) = N(loc(x, y), diag(scale(x, y)^2)): the encoder's features of x joined
    with onehot(y) before its heads. Samples site ``z`` ``[B, L]`` as the model does."""

    needs_labels = True

    def __init__(self, encoder: torch.nn.Module, num_classes: int):
        super().__init__()
        to_pyro_network_(encoder)
        self.encoder = encoder
        self.num_classes = num_classes

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x, F.one_hot(y, self.num_classes).to(x.dtype))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encode(x, y)
            pyro.sample("z", dist.Normal(loc, scale, validate_args=False).to_event(1))
