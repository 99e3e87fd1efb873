"""Amortized guides q(z | x), with the same site names as their models."""

from pyro_vae.guides.vae import DiagonalNormalGuide
from pyro_vae.guides.cvae import ConditionalNormalGuide

__all__ = ["ConditionalNormalGuide", "DiagonalNormalGuide"]
