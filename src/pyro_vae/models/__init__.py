"""Generative programs p(x, z); they know nothing of training."""

from pyro_vae.models.vae import VAEModel
from pyro_vae.models.cvae import CVAEModel

__all__ = ["CVAEModel", "VAEModel"]
