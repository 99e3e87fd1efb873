"""The semi-supervised M2 model of Kingma et al. (2014): p(x, y, z) = p(y) p(z) p(x | z, y)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule
from torch.nn import functional as F

from pyro_vae.likelihoods import Likelihood
from pyro_vae.nn import broadcast_cat
from pyro_vae.pyro_modules import to_pyro_network_


class M2Model(PyroModule):
    """p(x, y, z) = Categorical(y; uniform) N(z; 0, I) p(x | decoder([z, onehot(y)])).

    Sites inside ``pyro.plate("data", B)``: ``y`` (observed when labels are given, latent
    otherwise, and then summed out by enumeration), ``z`` ``[B, L]`` and the observed ``x``.
    """

    needs_labels = False  # labels are optional: observed where known

    def __init__(self, decoder: torch.nn.Module, likelihood: Likelihood, latent_dim: int, num_classes: int):
        super().__init__()
        to_pyro_network_(decoder)
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = latent_dim
        self.num_classes = num_classes

    def decoder_output(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(broadcast_cat(z, F.one_hot(y, self.num_classes).to(z.dtype)))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0]):
            self.generate(x, y)

    def generate(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sites ``y``, ``z`` and the observed ``x`` of p(y) p(z) p(x | y, z), inside the caller's
        data plate; returns (y, z) (y with an enumeration dimension where the guide enumerates it)."""
        batch = x.shape[0]
        y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(batch, self.num_classes)), obs=y)
        z = pyro.sample("z", dist.Normal(x.new_zeros(batch, self.latent_dim), 1.0).to_event(1))
        pyro.sample("x", self.likelihood.distribution(self.decoder_output(z, y)), obs=x)
        return y, z

    def decode_mean(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.likelihood.mean(self.decoder_output(z, y))

    def sample_prior(self, y: torch.Tensor) -> torch.Tensor:
        """One code z ~ p(z) = N(0, I) per label ``[N]`` -> ``[N, L]``."""
        param = next(self.decoder.parameters())
        return torch.randn(len(y), self.latent_dim, dtype=param.dtype, device=param.device)
