"""Generative programs p(x, z); they know nothing of training."""

from pyro_vae.models.vae import VAEModel
from pyro_vae.models.ae import AEModel
from pyro_vae.models.cvae import CVAEModel
from pyro_vae.models.m2 import M2Model
from pyro_vae.models.adgm import ADGMModel
from pyro_vae.models.quadrant import QuadrantCVAEModel
from pyro_vae.models.hvae import TwoLayerVAEModel

__all__ = ["ADGMModel", "AEModel", "M2Model", "CVAEModel", "QuadrantCVAEModel", "TwoLayerVAEModel", "VAEModel"]
