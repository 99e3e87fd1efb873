"""pyro-vae: variational autoencoders written as Pyro programs.

The model p(x | z) p(z) is a Pyro program, the encoder q(z | x) an amortized guide with
the same site names, and inference takes any (model, guide) pair::

    from pyro_vae import ModelConfig, build_vae, make_objective, importance_log_likelihood
    model, guide = build_vae(ModelConfig(latent_dim=20), image_shape=(1, 28, 28))
    loss = make_objective("elbo").differentiable_loss(model, guide, x)   # x: [B, 1, 28, 28]
    estimate = importance_log_likelihood(model, guide, x_test, k=1000)  # nats per example

``import pyro_vae`` itself imports neither torch nor Pyro (PEP 562): each name below is
imported on first use, so the ``pyro-vae`` command can install its signal handlers within
milliseconds of starting (:mod:`pyro_vae.entry`) instead of after the 1-3 s torch takes.
"""

import importlib
import sys
import types

#: Every public name and the module it comes from, imported on first use.
_EXPORTS = {
    "build_vae": "pyro_vae.build",
    "Config": "pyro_vae.config", "DataConfig": "pyro_vae.config", "ModelConfig": "pyro_vae.config",
    "TrainConfig": "pyro_vae.config",
    "load_dataset": "pyro_vae.data",
    "ImageDataset": "pyro_vae.data.datasets", "binarize": "pyro_vae.data.datasets",
    "PyroVAEError": "pyro_vae.errors",
    "FitResult": "pyro_vae.fit", "fit": "pyro_vae.fit",
    "Trainer": "pyro_vae.inference.train", "TrainSettings": "pyro_vae.inference.train",
    "importance_log_likelihood": "pyro_vae.inference.loglik",
    "elbo_terms": "pyro_vae.inference.objectives", "make_objective": "pyro_vae.inference.objectives",
    "LIKELIHOODS": "pyro_vae.likelihoods", "make_likelihood": "pyro_vae.likelihoods",
    # Figure functions: a process that draws no figure does not pay for importing matplotlib.
    **{name: "pyro_vae.plots" for name in (
        "apply_attribute", "attribute_vector", "interpolate_codes", "plot_arithmetic", "plot_curves",
        "plot_interpolation", "plot_latent", "plot_manifold", "plot_prior_check", "plot_reconstructions",
        "plot_samples")},
}

__version__ = "0.1.0"
__all__ = list(_EXPORTS)


def _import_pyro_quietly() -> None:
    """Import Pyro with tqdm's "IProgress not found" warning filtered: Pyro imports tqdm.auto,
    which warns so at import in a Jupyter kernel without ipywidgets, and pyro-vae draws no
    widget bars there. ``catch_warnings`` restores the user's filters on leaving the block."""
    if "pyro" in sys.modules:
        return
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import pyro  # noqa: F401


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pyro_vae' has no attribute {name!r}")
    _import_pyro_quietly()
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``pyro_vae.fit`` is the function although a submodule has the same name: the import
    system binds a submodule to its package's attribute once it is loaded (``import
    pyro_vae.fit`` by anyone), which would otherwise hide the function behind the module."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
