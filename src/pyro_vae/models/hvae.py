r"""A VAE with two stochastic layers (Burda et al. 2016, the IWAE paper's two-layer model):

.. math::  p(x, z_1, z_2) = N(z_2; 0, I_{L_2})\; N(z_1; \mu(z_2), \mathrm{diag}\,\sigma(z_2)^2)\;
           p(x \mid \mathrm{decoder}(z_1)).

Its guide (:class:`~pyro_vae.guides.hvae.TwoLayerGuide`) runs bottom-up,
q(z_1, z_2 | x) = q(z_1 | x) q(z_2 | z_1). The marginal prior of z_1 is a continuous mixture
of Gaussians, so the figures that assume p(z_1) = N(0, I) (manifold, prior check, compare)
refuse this model; samples draw z_2 then z_1 (:meth:`TwoLayerVAEModel.sample_prior`).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule

from pyro_vae.distributions import Event
from pyro_vae.likelihoods import Likelihood
from pyro_vae.models.priors import StandardNormalPrior
from pyro_vae.pyro_modules import to_pyro_network_


class TwoLayerVAEModel(PyroModule):
    """p(z2) p(z1 | z2) p(x | z1).

    ``top_decoder``: z2 ``[..., L2]`` -> (loc, scale) of p(z1 | z2), each ``[..., L1]``
    (a :class:`~pyro_vae.nn.LatentEncoder`); ``decoder``: z1 ``[..., L1]`` -> the
    likelihood's parameters ``[..., C, H, W]``. Sites inside ``pyro.plate("data", B)``, in
    this order: ``z2`` ``[B, L2]``, ``z1`` ``[B, L1]`` and the observed ``x``.
    ``latent_dim`` is L1, the code the decoder reads (what reconstructions and latent
    figures use); ``top_latent_dim`` is L2.
    """

    needs_labels = False
    #: p(z1) is not N(0, I): the figures that assume a standard-normal code refuse this model.
    hierarchical = True

    def __init__(self, top_decoder: torch.nn.Module, decoder: torch.nn.Module, likelihood: Likelihood,
                 latent_dim: int, top_latent_dim: int):
        super().__init__()
        to_pyro_network_(top_decoder)
        to_pyro_network_(decoder)
        self.top_decoder = top_decoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = latent_dim
        self.top_latent_dim = top_latent_dim
        self.top_prior = StandardNormalPrior(top_latent_dim)

    def conditional(self, z2: torch.Tensor) -> dist.TorchDistribution:
        """p(z1 | z2) = N(loc(z2), diag scale(z2)^2), event ``[L1]``, batch ``z2.shape[:-1]``."""
        loc, scale = self.top_decoder(z2)
        return Event(dist.Normal(loc, scale, validate_args=False), 1)

    def forward(self, x: torch.Tensor) -> None:
        batch_size = x.shape[0]
        with pyro.plate("data", batch_size, device=x.device):
            z2 = pyro.sample("z2", self.top_prior.distribution(x, batch_size))
            z1 = pyro.sample("z1", self.conditional(z2))
            pyro.sample("x", self.likelihood.distribution(self.decoder(z1)), obs=x)

    def sample_prior(self, n: int) -> torch.Tensor:
        """``n`` codes z1 ~ p(z1) by ancestral sampling (z2 ~ N(0, I), z1 ~ p(z1 | z2)), ``[n, L1]``."""
        like = next(self.decoder.parameters())
        return self.conditional(self.top_prior.sample(n, like)).sample()

    def decode_mean(self, z1: torch.Tensor) -> torch.Tensor:
        """E[x | z1] for codes ``z1`` ``[..., L1]`` -> images ``[..., C, H, W]``."""
        return self.likelihood.mean(self.decoder(z1))
