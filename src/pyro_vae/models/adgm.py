r"""The auxiliary deep generative model (ADGM) of Maaløe et al. (2016):

.. math::  p(x, y, z, a) = p(y)\, p(z)\, p(x \mid y, z)\, p(a \mid x, y, z).

M2's generative model (:class:`~pyro_vae.models.m2.M2Model`: uniform p(y), p(z) = N(0, I)
and the same decoder p(x | y, z)) with one more latent variable a that the model generates
last, from everything else. Marginally over a the model of x is M2's; a exists for the guide,
whose classifier q(y | a, x) and encoder q(z | a, y, x) read a draw of q(a | x): the
variational posterior q(y, z | x) = \int q(a | x) q(y | a, x) q(z | a, y, x) da becomes a
continuous mixture, more flexible than M2's (see :class:`~pyro_vae.guides.adgm.ADGMGuide`).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch.nn import functional as F

from pyro_vae.likelihoods import Likelihood
from pyro_vae.models.m2 import M2Model
from pyro_vae.nn import broadcast_cat
from pyro_vae.pyro_modules import to_pyro_network_


class ADGMModel(M2Model):
    """p(x, y, z, a) = Categorical(y; uniform) N(z; 0, I) p(x | decoder([z, onehot(y)]))
    N(a; mu(x, y, z), diag sigma(x, y, z)^2).

    Sites inside ``pyro.plate("data", B)``: ``y`` (observed when labels are given, otherwise
    enumerated by the guide), ``z`` ``[B, L]``, the observed ``x`` and ``a`` ``[B, A]``.
    ``aux_decoder`` is an :class:`~pyro_vae.nn.Encoder` reading the pixels of x with the
    condition ``[onehot(y), z]`` (``[..., K + L]``) and returning (loc, scale) ``[..., A]``.
    """

    def __init__(self, decoder: torch.nn.Module, aux_decoder: torch.nn.Module, likelihood: Likelihood,
                 latent_dim: int, num_classes: int, aux_dim: int):
        super().__init__(decoder, likelihood, latent_dim, num_classes)
        to_pyro_network_(aux_decoder)
        self.aux_decoder = aux_decoder
        self.aux_dim = aux_dim

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0]):
            y, z = self.generate(x, y)  # M2's p(y) p(z) p(x | y, z)
            # y may carry an enumeration dimension ([K, 1]); broadcast_cat lines it up with z [K, B, L]
            loc, scale = self.aux_decoder(x, broadcast_cat(F.one_hot(y, self.num_classes).to(z.dtype), z))
            pyro.sample("a", dist.Normal(loc, scale, validate_args=False).to_event(1))
