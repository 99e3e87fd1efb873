"""Generative programs p(x, z); they know nothing of training."""

from pyro_vae.models.vae import VAEModel
from pyro_vae.models.cvae import CVAEModel
from pyro_vae.models.m2 import M2Model

__all__ = ["M2Model", "CVAEModel", "VAEModel"]
