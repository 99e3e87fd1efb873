"""pyro-vae: variational autoencoders written as Pyro programs.

The model p(x | z) p(z) is a Pyro program, the encoder q(z | x) an amortized guide with
the same site names, and inference takes any (model, guide) pair::

    from pyro_vae import ModelConfig, build_vae, make_objective, importance_log_likelihood
    model, guide = build_vae(ModelConfig(latent_dim=20), image_shape=(1, 28, 28))
    loss = make_objective("elbo").differentiable_loss(model, guide, x)   # x: [B, 1, 28, 28]
    estimate = importance_log_likelihood(model, guide, x_test, k=1000)  # nats per example
"""

import warnings

with warnings.catch_warnings():
    # Pyro imports tqdm.auto, which in a Jupyter kernel without ipywidgets warns "IProgress
    # not found" at import; pyro-vae draws no widget bars there, so the warning is noise.
    # catch_warnings restores the user's filters on leaving the block.
    warnings.filterwarnings("ignore", message="IProgress not found")
    import pyro  # noqa: F401

from pyro_vae.build import build_vae
from pyro_vae.config import Config, DataConfig, ModelConfig, TrainConfig
from pyro_vae.data import load_dataset
from pyro_vae.data.datasets import ImageDataset, binarize
from pyro_vae.errors import PyroVAEError
from pyro_vae.fit import FitResult, fit
from pyro_vae.inference.train import Trainer, TrainSettings
from pyro_vae.inference.loglik import importance_log_likelihood
from pyro_vae.inference.objectives import elbo_terms, make_objective
from pyro_vae.likelihoods import LIKELIHOODS, make_likelihood

#: Figure functions, imported from pyro_vae.plots on first use, so that a process that draws
#: no figure (training without figures, evaluate) does not pay for importing matplotlib.
_FIGURES = ("apply_attribute", "attribute_vector", "interpolate_codes", "plot_arithmetic", "plot_curves",
            "plot_interpolation", "plot_latent", "plot_manifold", "plot_prior_check", "plot_reconstructions",
            "plot_samples")


def __getattr__(name):
    if name in _FIGURES:
        from pyro_vae import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'pyro_vae' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "Config", "DataConfig", "ModelConfig", "TrainConfig", "LIKELIHOODS", "PyroVAEError",
    "FitResult", "ImageDataset", "Trainer", "TrainSettings", "binarize", "fit",
    "build_vae", "elbo_terms", "importance_log_likelihood", "load_dataset", "make_likelihood",
    "make_objective", "apply_attribute", "attribute_vector", "interpolate_codes", "plot_arithmetic", "plot_curves",
    "plot_interpolation", "plot_latent", "plot_manifold", "plot_prior_check", "plot_reconstructions", "plot_samples",
]
