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

The mixtures are :class:`DiagonalNormalMixture`: the density of a ``MixtureSameFamily`` over
diagonal Normals, computed by matrix products into ``[..., B, K]`` (K = components) rather
than through ``[..., B, K, L]`` terms.
"""

from __future__ import annotations

import contextlib
import math

import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule
from torch import nn
from torch.nn import functional as F

from pyro_vae.distributions import Event, SameShapeNormal, logsumexp


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

    def fixed(self) -> contextlib.AbstractContextManager:
        """A block in which the prior's parameters do not change and nothing is differentiated
        (an evaluation): a prior may then compute what depends on its parameters alone once
        for all of the block's :meth:`distribution` calls. Nothing to keep here."""
        return contextlib.nullcontext()


class MixturePrior(Prior):
    """A prior that is a :class:`DiagonalNormalMixture` whose components depend on its
    parameters only (:meth:`mixture`, batch shape ``[]``). Inside :meth:`fixed`, without
    autograd, the mixture and its matrices are made once per dtype and device and expanded
    for every call: the VampPrior's pseudo-inputs then go through the encoder once per
    evaluation rather than once per chunk of draws (about a fifth of its estimator's time,
    issue #19), with the same values."""

    #: ``{(dtype, device): mixture}`` inside :meth:`fixed`, else None (a class default, so a
    #: module unpickled from before this attribute reads None too).
    _fixed_mixtures = None

    def mixture(self, like: torch.Tensor) -> "DiagonalNormalMixture":
        """p(z) with batch shape ``[]``, event ``[L]``, dtype and device of ``like``."""
        raise NotImplementedError

    def distribution(self, like, batch_size):
        cache = self._fixed_mixtures
        if cache is None or torch.is_grad_enabled():  # a graph is not shared between calls
            return self.mixture(like).expand([batch_size])
        key = (like.dtype, like.device)
        if key not in cache:
            cache[key] = self.mixture(like)
        return cache[key].expand([batch_size])

    @contextlib.contextmanager
    def fixed(self):
        outer = self._fixed_mixtures
        if outer is None:  # nested blocks share the outer one's mixtures
            self._fixed_mixtures = {}
        try:
            yield
        finally:
            self._fixed_mixtures = outer


@contextlib.contextmanager
def fixed_priors(*modules: nn.Module):
    """Every :class:`Prior` among ``modules`` (any callables) and their submodules inside its
    :meth:`Prior.fixed` block (for an estimator that evaluates many chunks with the same
    parameters)."""
    with contextlib.ExitStack() as stack:
        for module in modules:
            for sub in module.modules() if isinstance(module, nn.Module) else ():  # a plain function has none
                if isinstance(sub, Prior):
                    stack.enter_context(sub.fixed())
        yield


class StandardNormal(SameShapeNormal):
    r"""N(0, 1) per element with a given batch shape: a :class:`~pyro.distributions.Normal`
    whose log-density and KL skip the arithmetic with the unit scale and zero mean,

    .. math:: \log p(z) = -\tfrac{1}{2} z^2 - \log\sqrt{2\pi}, \qquad
              \mathrm{KL}(N(m, s^2) \,\|\, N(0, 1)) = \tfrac{1}{2} (s^2 + m^2 - 1 - \log s^2),

    bit for bit what ``Normal(0, 1)`` computes (its ``z - 0``, ``/ (2 * 1)``, ``- log 1`` and
    ``s / 1`` are exact), with fewer tensor operations in the training step and its backward.
    Made by :meth:`like` (zero mean and unit scale broadcast, not filled); every other method
    (``sample``, ``rsample``, ``expand``, ``entropy``) is ``Normal``'s.
    """

    @classmethod
    def like(cls, like: torch.Tensor, batch_shape: tuple[int, ...]) -> "StandardNormal":
        """N(0, 1) with ``batch_shape`` on the dtype and device of ``like``."""
        zero = like.new_zeros(()).expand(batch_shape)
        return cls(zero, like.new_ones(()).expand(batch_shape), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        # (z * z) * -0.5 is -(z ** 2) / 2 bit for bit (torch squares by z * z; the negation and the
        # halving are exact), and so is its gradient, in one operation and autograd node fewer.
        return (value * value) * -0.5 - math.log(math.sqrt(2 * math.pi))


@torch.distributions.kl.register_kl(torch.distributions.Normal, StandardNormal)
def _kl_normal_standard_normal(p: torch.distributions.Normal, q: StandardNormal) -> torch.Tensor:
    """KL(N(m, s^2) || N(0, 1)) per element: torch's Normal-Normal KL with q's 0 and 1 left out
    (the same floating-point operations on m and s, so the same bits)."""
    var_ratio = p.scale.pow(2)
    return 0.5 * (var_ratio + p.loc.pow(2) - 1 - var_ratio.log())


class StandardNormalPrior(Prior):
    """p(z) = N(0, I_L) (a :class:`StandardNormal`)."""

    closed_form_kl = True

    def distribution(self, like, batch_size):
        return Event(StandardNormal.like(like, (batch_size, self.latent_dim)), 1)


#: Bytes of a :class:`DiagonalNormalMixture`'s ``[rows, K]`` float64 block of component densities.
BLOCK_BYTES = 2 * 1024 * 1024


class DiagonalNormalMixture(dist.TorchDistribution):
    r"""sum_k softmax(logits)_k N(loc_k, diag(scale_k^2)) with ``logits [K]`` and ``loc, scale
    [K, L]`` shared by every element of the batch shape (event ``[L]``, nats).

    The same density as :class:`pyro.distributions.MixtureSameFamily` over diagonal Normals,
    computed without its ``[..., K, L]`` intermediate: with precisions :math:`p = 1/s^2`,

    .. math::

        \log \pi_k + \log N(z; \mu_k, s_k) = c_k - \tfrac{1}{2} (z^2)^\top p_k + z^\top (p_k \mu_k),
        \qquad c_k = \log \pi_k - \tfrac{1}{2} \mu_k^\top (p_k \mu_k) - \textstyle\sum_l \log s_{kl}
                     - \tfrac{L}{2} \log 2\pi,

    one matrix product ``[z^2, z] [..., 2L]`` by ``[-p / 2; p mu]`` ``[2L, K]`` plus ``c``
    (``addmm``, on the CPU in row blocks of :data:`BLOCK_BYTES`), then a logsumexp over K
    (:func:`pyro_vae.distributions.logsumexp`, which keeps ``exp`` off its slow path for the
    far components). Its terms are large where the scales
    are small and cancel, so all of it is in float64, where the cancellation costs nothing of
    float32's precision; the result has ``value``'s dtype. The ``[2L, K]`` and ``[K]`` terms
    are computed once per distribution and shared with its expansions (``terms``). For the
    VampPrior's 500 components and 40 dimensions this stores 40 times less per draw than
    ``MixtureSameFamily``'s ``[..., K, L]`` and avoids the page faults of such tensors beyond
    the allocator's mmap threshold (half of a training step's CPU time with it).
    """

    arg_constraints = {}
    support = dist.constraints.real_vector
    has_rsample = False

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                 batch_shape=torch.Size(), validate_args=None, terms=None):
        self.logits, self.loc, self.scale = logits, loc, scale
        self._terms = terms
        super().__init__(torch.Size(batch_shape), loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return DiagonalNormalMixture(self.logits, self.loc, self.scale, batch_shape, terms=self.terms)

    @property
    def terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weights [2L, K], offset [K])`` in float64: the component log-densities plus log
        weights at z are ``offset + [z^2, z] @ weights``."""
        if self._terms is None:
            loc, scale = self.loc.double(), self.scale.double()
            precision = scale.pow(-2)  # [K, L]
            weighted_loc = precision * loc
            offset = (torch.log_softmax(self.logits.double(), -1) - 0.5 * (weighted_loc * loc).sum(-1)
                      - scale.log().sum(-1) - 0.5 * loc.shape[-1] * math.log(2 * math.pi))  # [K]
            self._terms = torch.cat([-0.5 * precision, weighted_loc], -1).T, offset
        return self._terms

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        weights, offset = self.terms
        wide = value.double()
        features = torch.cat([wide * wide, wide], -1).reshape(-1, 2 * wide.shape[-1])  # [M, 2L]
        # On the CPU, row blocks whose [rows, K] float64 block stays in the cache and under the
        # allocator's mmap threshold (pyro_vae.memory): the estimator's [1336, 500] whole would be
        # 5.3 MB, mapped and faulted in afresh at every chunk; in blocks the mixture took 0.7x the
        # CPU time. A GPU gets one block (its caching allocator reuses memory; big launches).
        rows = max(1, BLOCK_BYTES // (8 * weights.shape[-1])) if value.device.type == "cpu" else features.shape[0]
        log_prob = torch.cat([logsumexp(torch.addmm(offset, features[start:start + rows], weights), -1)
                              for start in range(0, max(1, features.shape[0]), max(1, rows))])
        log_prob = log_prob.reshape(value.shape[:-1]).to(value.dtype)
        return log_prob.expand(torch.broadcast_shapes(log_prob.shape, self.batch_shape))

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        k = dist.Categorical(logits=self.logits).sample(shape)  # [*shape]
        noise = torch.randn(shape + self.event_shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc[k] + self.scale[k] * noise


class MixtureOfGaussiansPrior(MixturePrior):
    """p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)), k = 1..K, all learned.

    Means start as draws from N(0, I) (torch's global generator, as the networks' weights:
    --seed sets both), scales at 1 and weights uniform: at K = 1 and mu = 0 it is the standard Normal.
    """

    def __init__(self, latent_dim: int, components: int):
        super().__init__(latent_dim)
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, latent_dim))
        self.raw_scale = nn.Parameter(torch.full((components, latent_dim), math.log(math.expm1(1.0))))

    def mixture(self, like):
        return DiagonalNormalMixture(self.logits.to(like.dtype), self.loc.to(like.dtype),
                                    F.softplus(self.raw_scale).to(like.dtype) + 1e-4)


class _Unregistered:
    """Holds a module without making it a submodule: the VampPrior uses the guide's
    encoder, whose parameters belong to the guide (registering them in the model too
    would list them twice to the optimizer and in the checkpoint)."""

    def __init__(self, module: nn.Module):
        self.module = module


class VampPrior(MixturePrior):
    r"""p(z) = (1/K) sum_k q(z | u_k), the variational mixture of posteriors prior.

    ``encoder`` is the guide's (images ``[..., C, H, W]`` -> ``(loc, scale)`` ``[..., L]``); with a
    flow guide the components are its encoder's Normal before the flow steps, not the flowed
    q(z | u_k) (whose density at a given z would need every IAF step inverted);
    the K pseudo-inputs u_k ``[K, C, H, W]`` are learned, clamped to [0, 1] (Tomczak & Welling's
    code: a hard tanh, the same values) and initialised near their ``N(0.05, 0.01)`` (torch's
    global generator, as the networks' weights: --seed sets both). The encoder's
    gradient from log p(z) flows into the guide's parameters. With K = 1 and u_1 = x,
    p(z) = q(z | x) exactly (without a flow).
    """

    def __init__(self, latent_dim: int, encoder: nn.Module, image_shape: tuple[int, int, int],
                 pseudo_inputs: int):
        super().__init__(latent_dim)
        self._encoder = _Unregistered(encoder)
        self.raw_pseudo_inputs = nn.Parameter(0.05 + 0.01 * torch.randn((pseudo_inputs,) + tuple(image_shape)))

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        """u ``[K, C, H, W]`` in [0, 1]."""
        # clamp, not hardtanh: the same values, but a pixel at exactly 0 or 1 keeps its gradient
        # (hardtanh's is 0 there), and --pseudo-init data puts most pixels there (background,
        # binary images): they never moved. Beyond [0, 1] the gradient is 0 with either.
        return self.raw_pseudo_inputs.clamp(0.0, 1.0)

    @torch.no_grad()
    def set_pseudo_inputs(self, images: torch.Tensor) -> None:
        """Set u to ``images`` ``[K, C, H, W]`` (e.g. training images, a common initialisation)."""
        self.raw_pseudo_inputs.copy_(images.to(self.raw_pseudo_inputs))

    def mixture(self, like):
        loc, scale = self._encoder.module(self.pseudo_inputs.to(like.dtype))  # [K, L] each
        return DiagonalNormalMixture(like.new_zeros(loc.shape[0]), loc, scale)


#: ``--prior`` names; each entry builds the prior from (latent_dim, options).
PRIORS = ("standard", "mog", "vamp")
#: ``--pseudo-init``: where the VampPrior's pseudo-inputs start.
PSEUDO_INITS = ("random", "data")


def make_prior(name: str, latent_dim: int, *, components: int = 10, pseudo_inputs: int = 500,
               encoder: nn.Module | None = None, image_shape=None) -> Prior:
    """The prior called ``name`` (one of :data:`PRIORS`); a learned one starts from torch's
    global generator (the CLI seeds it with --seed)."""
    if name == "standard":
        return StandardNormalPrior(latent_dim)
    if name == "mog":
        return MixtureOfGaussiansPrior(latent_dim, components)
    if name == "vamp":
        if encoder is None or image_shape is None:
            raise ValueError("the VampPrior needs the guide's encoder and the image shape.")
        return VampPrior(latent_dim, encoder, image_shape, pseudo_inputs)
    raise ValueError(f"unknown prior {name!r}")


def prior_has_closed_form_kl(name: str) -> bool:
    """Whether ``--prior name`` allows ``--objective analytic-kl``."""
    return {"standard": StandardNormalPrior, "mog": MixtureOfGaussiansPrior, "vamp": VampPrior}[name].closed_form_kl
