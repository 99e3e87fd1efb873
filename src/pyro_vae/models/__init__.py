"""Generative programs p(x, z); they know nothing of training."""

from pyro_vae.models.vae import VAEModel

__all__ = ["VAEModel"]
