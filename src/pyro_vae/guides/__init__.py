"""Amortized guides q(z | x), with the same site names as their models."""

from pyro_vae.guides.vae import DiagonalNormalGuide

__all__ = ["DiagonalNormalGuide"]
