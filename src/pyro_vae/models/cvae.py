"""The conditional VAE's generative program p(x, z | y) = p(z | y) p(x | decoder(z, y))."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule
from torch import nn
from torch.nn import functional as F

from pyro_vae.likelihoods import Likelihood
from pyro_vae.nn import broadcast_cat
from pyro_vae.pyro_modules import to_pyro_network_


class CVAEModel(PyroModule):
    """p(x, z | y) = p(z | y) p(x | decoder([z, onehot(y)])) (Sohn et al. 2015).

    The prior is N(0, I), or with ``conditional_prior`` a learned N(mu_y, diag(sigma_y^2))
    per class. Sites: ``z`` ``[B, L]`` and the observed ``x`` ``[B, C, H, W]`` inside
    ``pyro.plate("data", B)``; the label ``y`` ``[B]`` (int64) is an argument, not a site,
    so estimators of this program give log p(x | y).
    """

    needs_labels = True

    def __init__(self, decoder: torch.nn.Module, likelihood: Likelihood, latent_dim: int, num_classes: int,
                 conditional_prior: bool = False):
        super().__init__()
        to_pyro_network_(decoder)
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.conditional_prior = conditional_prior
        if conditional_prior:
            self.prior_loc = nn.Parameter(torch.zeros(num_classes, latent_dim))
            # softplus(raw) + 1e-3 starts at 1: the standard prior.
            self.prior_raw_scale = nn.Parameter(torch.full((num_classes, latent_dim), math.log(math.expm1(1 - 1e-3))))

    def onehot(self, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.num_classes).to(like.dtype)

    def prior(self, y: torch.Tensor, like: torch.Tensor) -> dist.TorchDistribution:
        if self.conditional_prior:
            loc, scale = self.prior_loc[y], F.softplus(self.prior_raw_scale[y]) + 1e-3
        else:
            loc, scale = like.new_zeros(y.shape[0], self.latent_dim), like.new_ones(y.shape[0], self.latent_dim)
        return dist.Normal(loc, scale, validate_args=False).to_event(1)

    def decoder_output(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(broadcast_cat(z, self.onehot(y, z)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(y, x))
            pyro.sample("x", self.likelihood.distribution(self.decoder_output(z, y)), obs=x)

    def decode_mean(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """E[x | z, y]: codes ``[..., L]`` and labels broadcastable to their leading dims."""
        return self.likelihood.mean(self.decoder_output(z, y))

    def sample_prior(self, y: torch.Tensor) -> torch.Tensor:
        """One code z ~ p(z | y) per label ``[N]`` -> ``[N, L]``."""
        return self.prior(y, next(self.decoder.parameters())).sample()
