"""Amortized guides q(z | x), with the same site names as their models."""

from pyro_vae.guides.vae import DiagonalNormalGuide
from pyro_vae.guides.ae import PointMassGuide
from pyro_vae.guides.cvae import ConditionalNormalGuide
from pyro_vae.guides.m2 import M2Guide
from pyro_vae.guides.adgm import ADGMGuide
from pyro_vae.guides.hvae import TwoLayerGuide

__all__ = ["ADGMGuide", "PointMassGuide", "M2Guide", "ConditionalNormalGuide", "DiagonalNormalGuide", "TwoLayerGuide"]
