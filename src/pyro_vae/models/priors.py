r"""Priors p(z) a VAE model takes: standard Normal, mixture of Gaussians, VampPrior.

A prior is a small ``PyroModule`` with ``distribution(like, batch_size)``: a Pyro
distribution with batch shape ``[B]`` and event shape ``[L]`` (nats), which the model
samples at site ``z``; nothing else in the package knows which prior it is. Each says
whether KL(q || p) has a closed form for a Gaussian guide (``closed_form_kl``): only the
standard Normal does; the mixtures need the Monte Carlo KL log q(z|x) - log p(z) at the
draw (``--objective elbo``, ``iwae``, ``iwae-dreg``), and ``--objective analytic-kl`` is
refused for them when the configuration is validated.

* :class:`StandardNormalPrior`: p(z) = N(0, I_L).
* :class:`MixtureOfGaussiansPrior`: p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)) with
  learned weights, means and scales (``--prior mog --prior-components K``).
* :class:`VampPrior` (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k), the guide's
  own encoder at K learned pseudo-inputs u_k (``--prior vamp --pseudo-inputs K``).

The mixtures are :class:`pyro.distributions.MixtureSameFamily` over diagonal Normals; their
log-density at ``[..., B, L]`` builds ``[..., B, K, L]`` terms (K = components), which sets
the memory of the log-likelihood estimator's chunks.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule
from torch import nn
from torch.nn import functional as F


class Prior(PyroModule):
    """p(z) over ``latent_dim`` dimensions; subclasses implement :meth:`distribution`."""

    #: KL(N(m, s) || p) has a closed form (``--objective analytic-kl`` may be used).
    closed_form_kl = False

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def distribution(self, like: torch.Tensor, batch_size: int) -> dist.TorchDistribution:
        """p(z) with batch shape ``[batch_size]``, event ``[L]``, dtype and device of ``like``."""
        raise NotImplementedError

    def sample(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """``n`` draws z ~ p(z), ``[n, L]``."""
        return self.distribution(like, n).sample()


class StandardNormalPrior(Prior):
    """p(z) = N(0, I_L)."""

    closed_form_kl = True

    def distribution(self, like, batch_size):
        zeros = like.new_zeros(batch_size, self.latent_dim)
        return dist.Normal(zeros, 1.0, validate_args=False).to_event(1)


def _diagonal_mixture(logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                      batch_size: int) -> dist.TorchDistribution:
    """sum_k softmax(logits)_k N(loc_k, diag(scale_k^2)), ``logits [K]``, ``loc, scale [K, L]``,
    expanded to batch shape ``[batch_size]``."""
    components = dist.Normal(loc, scale, validate_args=False).to_event(1)
    mixture = dist.MixtureSameFamily(dist.Categorical(logits=logits, validate_args=False), components,
                                     validate_args=False)
    return mixture.expand([batch_size])


class MixtureOfGaussiansPrior(Prior):
    """p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)), k = 1..K, all learned.

    Means start as draws from N(0, I) (a fixed generator, so runs are reproducible),
    scales at 1 and weights uniform: at K = 1 and mu = 0 it is the standard Normal.
    """

    def __init__(self, latent_dim: int, components: int, seed: int = 0):
        super().__init__(latent_dim)
        generator = torch.Generator().manual_seed(seed)
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, latent_dim, generator=generator))
        self.raw_scale = nn.Parameter(torch.full((components, latent_dim), math.log(math.expm1(1.0))))

    def distribution(self, like, batch_size):
        return _diagonal_mixture(self.logits.to(like.dtype), self.loc.to(like.dtype),
                                 F.softplus(self.raw_scale).to(like.dtype) + 1e-4, batch_size)


class _Unregistered:
    """Holds a module without making it a submodule: the VampPrior uses the guide's
    encoder, whose parameters belong to the guide (registering them in the model too
    would list them twice to the optimizer and in the checkpoint)."""

    def __init__(self, module: nn.Module):
        self.module = module


class VampPrior(Prior):
    r"""p(z) = (1/K) sum_k q(z | u_k), the variational mixture of posteriors prior.

    ``encoder`` is the guide's (images ``[..., C, H, W]`` -> ``(loc, scale)`` ``[..., L]``);
    the K pseudo-inputs u_k ``[K, C, H, W]`` are learned, kept in [0, 1] by a hard tanh as
    in Tomczak & Welling's code and initialised near their ``N(0.05, 0.01)``. The encoder's
    gradient from log p(z) flows into the guide's parameters. With K = 1 and u_1 = x,
    p(z) = q(z | x) exactly.
    """

    def __init__(self, latent_dim: int, encoder: nn.Module, image_shape: tuple[int, int, int],
                 pseudo_inputs: int, seed: int = 0):
        super().__init__(latent_dim)
        self._encoder = _Unregistered(encoder)
        generator = torch.Generator().manual_seed(seed)
        self.raw_pseudo_inputs = nn.Parameter(0.05 + 0.01 * torch.randn((pseudo_inputs,) + tuple(image_shape),
                                                                        generator=generator))

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        """u ``[K, C, H, W]`` in [0, 1]."""
        return F.hardtanh(self.raw_pseudo_inputs, 0.0, 1.0)

    @torch.no_grad()
    def set_pseudo_inputs(self, images: torch.Tensor) -> None:
        """Set u to ``images`` ``[K, C, H, W]`` (e.g. training images, a common initialisation)."""
        self.raw_pseudo_inputs.copy_(images.to(self.raw_pseudo_inputs))

    def distribution(self, like, batch_size):
        loc, scale = self._encoder.module(self.pseudo_inputs.to(like.dtype))  # [K, L] each
        logits = like.new_zeros(loc.shape[0])
        return _diagonal_mixture(logits, loc, scale, batch_size)


#: ``--prior`` names; each entry builds the prior from (latent_dim, options).
PRIORS = ("standard", "mog", "vamp")
#: ``--pseudo-init``: where the VampPrior's pseudo-inputs start.
PSEUDO_INITS = ("random", "data")


def make_prior(name: str, latent_dim: int, *, components: int = 10, pseudo_inputs: int = 500,
               encoder: nn.Module | None = None, image_shape=None, seed: int = 0) -> Prior:
    """The prior called ``name`` (one of :data:`PRIORS`)."""
    if name == "standard":
        return StandardNormalPrior(latent_dim)
    if name == "mog":
        return MixtureOfGaussiansPrior(latent_dim, components, seed)
    if name == "vamp":
        if encoder is None or image_shape is None:
            raise ValueError("the VampPrior needs the guide's encoder and the image shape.")
        return VampPrior(latent_dim, encoder, image_shape, pseudo_inputs, seed)
    raise ValueError(f"unknown prior {name!r}")


def prior_has_closed_form_kl(name: str) -> bool:
    """Whether ``--prior name`` allows ``--objective analytic-kl``."""
    return {"standard": StandardNormalPrior, "mog": MixtureOfGaussiansPrior, "vamp": VampPrior}[name].closed_form_kl
