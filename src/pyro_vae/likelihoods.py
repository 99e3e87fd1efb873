"""Observation models p(x | decoder output), chosen by name.

A likelihood turns the decoder's output ``[..., C, H, W]`` into a Pyro distribution whose
event is the whole image (``.to_event(3)``), so ``log_prob`` is in nats per image. Each
one also checks, once at the data boundary, that the data lie in its support.

Adding one: subclass :class:`Likelihood`, implement ``distribution`` (and ``mean`` if
the distribution has no ``.mean``), set ``name``, ``data_kind`` and ``uses_scale``, and
decorate it with ``@register``. A likelihood that reads several numbers per pixel (a
location and a scale, mixture weights, 256 logits) sets ``params_per_channel``; the decoder
then outputs ``[..., P * C, H, W]``.

Which data a likelihood takes (``data_kind``):

* ``"binary"``: 0/1 pixels (the Bernoulli);
* ``"8-bit"``: the 256 grey levels k/255, k = 0..255, as the data loaders scale bytes
  (the discretized likelihoods below, with their masses in :mod:`pyro_vae.discrete`, which give each level a
  probability mass; binary data are on this grid too, as levels 0 and 255);
* ``"unit-interval"``: grey levels as real numbers (a density; the Gaussians accept any
  real value, the continuous Bernoulli [0, 1]).
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule
from torch import nn
from torch.nn import functional as F

from pyro_vae import discrete
from pyro_vae.distributions import Event
from pyro_vae.errors import DataError

LIKELIHOODS: dict[str, type[Likelihood]] = {}


def register(cls: type[Likelihood]) -> type[Likelihood]:
    LIKELIHOODS[cls.name] = cls
    return cls


def make_likelihood(name: str, image_shape: tuple[int, int, int], scale: float | None = None) -> Likelihood:
    """The likelihood called ``name`` for images of ``image_shape``; ``scale`` is the
    fixed Gaussian's standard deviation (and the learned ones' starting value), 0.1 by
    default, and refused for a likelihood without one (``uses_scale`` False: the Bernoulli)."""
    from pyro_vae.config import _choice  # the sentence ModelConfig gives a name not registered

    _choice("likelihood", name, tuple(LIKELIHOODS))  # a bare KeyError named neither the problem nor the names
    cls = LIKELIHOODS[name]
    if scale is not None and not cls.uses_scale:  # it was accepted and ignored
        from pyro_vae.errors import ConfigError

        raise ConfigError(f"scale={scale!r} has no effect on the {name} likelihood (it is the Gaussian likelihoods' "
                          "sigma); drop it or choose 'gaussian'.")
    return cls(image_shape=tuple(image_shape), scale=0.1 if scale is None else scale)


class Likelihood(PyroModule):
    name = ""
    #: Whether ``--likelihood-scale`` (``scale``) means anything to this likelihood: the
    #: fixed Gaussian's sigma, or the learned ones' starting sigma. Where it is False,
    #: setting the option is refused (see :func:`pyro_vae.config.ineffective_options`).
    uses_scale = False
    #: "binary", "8-bit" or "unit-interval": the data it gives a probability (density) to.
    data_kind = "unit-interval"
    #: Decoder outputs per pixel and channel that this likelihood reads.
    params_per_channel = 1
    #: Where it ``uses_scale``: the value its sigma stays above. A new configuration whose
    #: ``likelihood_scale`` is not above it is refused (:meth:`pyro_vae.config.Config.validate`).
    scale_floor = 0.0

    @classmethod
    def output_shape(cls, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The decoder's output shape ``(P * C, H, W)`` for images ``(C, H, W)``."""
        c, h, w = image_shape
        return (cls.params_per_channel * c, h, w)

    def __init__(self, image_shape: tuple[int, int, int], scale: float = 0.1):
        super().__init__()
        self.image_shape = image_shape

    def distribution(self, output: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        """E[x | decoder output], the image one shows for a decoded code."""
        return self.distribution(output).mean

    def check_support(self, x: torch.Tensor, what: str = "the data", hint: str | None = None) -> None:
        """Raise :class:`DataError` if ``x`` lies outside this likelihood's support.

        A support is a property of each pixel value, so ``x`` may be images of any shape or
        just the distinct values they hold (a data set of bytes passes those).

        The message ends with how to fix it: ``hint`` where the caller gives one (the CLI
        names its flags), else the way to do it from Python."""
        if not torch.isfinite(x).all():
            raise DataError(f"{what} contains NaN or infinite values; clean or drop those images.")

    def _event(self, d: torch.distributions.Distribution) -> dist.TorchDistribution:
        return d.to_event(len(self.image_shape))


class BinaryBernoulli(dist.Bernoulli):
    """Bernoulli(logits) whose ``log_prob`` takes 0/1 values only, as the Bernoulli
    likelihood's data are checked to be once at the boundary:

    log p(x) = x log sigmoid(l) + (1 - x) log sigmoid(-l) = -softplus(l (1 - 2x)),

    computed by torch's binary cross-entropy kernel on ``logits`` and ``value`` broadcast
    to one shape. It is as exact as the softplus form (largest error per pixel against
    float64 4.8e-7 vs 5.4e-7 for logits ~ N(0, 9), benchmarks/bernoulli.py) and no slower at
    the training step's shapes, where the softplus form was measured 1.11-1.22x slower
    (issue #16); torch.distributions.Bernoulli.log_prob is the same kernel after its
    argument checks and broadcasting. For values other than 0 and 1 it is not a density.
    """

    def __init__(self, probs=None, logits=None, validate_args=None):
        if probs is not None or not isinstance(logits, torch.Tensor):
            super().__init__(probs, logits, validate_args=validate_args)
            return
        # Bernoulli's own __init__ less broadcast_all, which returns a view of one tensor as it is.
        self.logits = self._param = logits
        torch.distributions.Distribution.__init__(self, logits.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        # torch asks a subclass with its own __init__ for its own expand: Bernoulli's, into this class
        return super().expand(batch_shape, _instance=self._get_checked_instance(BinaryBernoulli, _instance))

    def log_prob(self, value):
        logits = self.logits
        if logits.shape != value.shape:  # the kernel wants one shape; a training batch has it already
            logits, value = torch.broadcast_tensors(logits, value)
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none")


class BinaryBernoulliImages(Event):
    """:class:`BinaryBernoulli` pixels read as one event (an image): ``log_prob`` sums the
    binary cross-entropies over the event dimensions and then negates the ``[batch]`` sum,
    where ``Independent`` negates every pixel's term before summing. Negation is exact and
    commutes with rounding, so the value and its gradient are bit for bit ``Independent``'s,
    without a negation pass over ``[batch, pixels]`` in the step and in its backward."""

    def log_prob(self, value):
        base, n = self.base_dist, self.reinterpreted_batch_ndims
        logits = base.logits
        terms = None
        if logits.shape != value.shape and not (logits.requires_grad and torch.is_grad_enabled()):
            terms = _cross_entropy_of_broadcast_values(logits, value)
        if terms is None:
            if logits.shape != value.shape:
                logits, value = torch.broadcast_tensors(logits, value)
            terms = F.binary_cross_entropy_with_logits(logits, value, reduction="none")
        return -terms.reshape(terms.shape[:terms.dim() - n] + (-1,)).sum(-1)


def _cross_entropy_of_broadcast_values(logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor | None:
    """``binary_cross_entropy_with_logits(logits, value.expand_as(logits), reduction="none")``
    bit for bit, for values that broadcast to the logits' shape (K importance samples or
    particles of a batch: logits ``[K, B, ...]``, values ``[B, ...]``); None for other shapes.

    The kernel computes (1 - x) l - log sigmoid(l) as ``(1 - x).mul_(l).sub_(log_sigmoid(l))``,
    so over the broadcast shape: 1 - x here is taken of the values before they are broadcast,
    K times fewer, and the products and differences are the kernel's (multiplication commutes
    exactly). No gradient: the kernel's backward is fused, this one's would not be (callers
    take this path only where no gradient reaches the logits: the estimator, evaluation)."""
    terms = (1 - value) * logits
    if terms.shape != logits.shape:
        return None
    return terms.sub_(F.logsigmoid(logits))


def _all_zero_or_one(x: torch.Tensor) -> bool:
    """Whether every value of ``x`` is 0 or 1 (so also finite), as ``((x == 0) | (x == 1)).all()``
    says, in three vectorized passes: (x - 1) x is 0 exactly where x is 0 or 1 (for any other
    finite x it is not: x - 1 is exact near 1, and near 0 the product is -x itself), NaN where
    x is NaN and -inf where x is infinite; ``aminmax`` propagates NaN. Four times faster than
    the comparisons and ``isfinite`` on float images (issue #16: the estimator's fixed cost per
    call, and the check of a whole data set); other dtypes take the comparisons."""
    if not x.is_floating_point() or x.numel() == 0:
        return bool(((x == 0) | (x == 1)).all())
    low, high = torch.aminmax((x - 1).mul_(x))
    return low.item() == 0 and high.item() == 0


@register
class BernoulliLikelihood(Likelihood):
    """x ~ Bernoulli(sigmoid(output)) per pixel; ``output`` are logits (stable log-probs)."""

    name = "bernoulli"
    data_kind = "binary"

    def distribution(self, output):
        # Arguments are checked once at the data boundary, not at every step.
        return BinaryBernoulliImages(BinaryBernoulli(logits=output, validate_args=False), len(self.image_shape))

    def mean(self, output):
        return torch.sigmoid(output)

    def check_support(self, x, what="the data", hint=None):
        if _all_zero_or_one(x):  # then finite too: the base class's check would pass
            return
        super().check_support(x, what, hint)  # NaN or infinity: its message first
        if not ((x == 0) | (x == 1)).all():
            raise DataError(
                f"{what} has grey-level pixels but the Bernoulli likelihood needs 0/1 pixels; "
                + (hint or "binarize them (pyro_vae.binarize(x), or the batches of "
                           "load_dataset(..., binarize='dynamic').batches()) or choose a continuous "
                           "likelihood ('continuous-bernoulli' or 'gaussian')") + "."
            )


class LogitContinuousBernoulli(dist.ContinuousBernoulli):
    r"""ContinuousBernoulli(logits) whose normaliser, mean and inverse CDF are computed from the
    logits l themselves, exact for every l.

    torch computes them from probs = sigmoid(l) clamped to [eps, 1 - eps] (float32 eps 1.2e-7),
    which caps |l| at about 15.9: for |l| > 16 its log C(l) stays at 2.769 while the true
    log C(l) = log(l / tanh(l/2)) grows as log |l| (2.996 at 20, 3.91 at 50), so the density
    integrated to 0.80 at l = 20 and 0.32 at l = 50, and the mean and draws were those of
    l = +-15.9 (mean 0.063 for l = -46, not 0.022). A decoder trained on images whose
    background is exactly 0 puts logits there. Here, with a = |l|:

    log C(l) = log a - log tanh(a/2)  (a >= 0.1),  log 2 + l^2/12 - 7 l^4/1440  (a < 0.1);
    E[x] = 1/(1 - e^{-l}) - 1/l  (a >= 0.1),  1/2 + l/12 - l^3/720  (a < 0.1);
    F^{-1}(u) = log1p(u expm1(l)) / l  for l < 0, and 1 - F^{-1}_{-l}(1 - u) for l > 0

    (the series are within 4e-10 of the closed forms at a = 0.1)."""

    SERIES = 0.1

    def _cont_bern_log_norm(self):
        l = self.logits
        small = l.abs() < self.SERIES
        a = torch.where(small, torch.ones_like(l), l.abs())  # both branches finite, so both gradients are
        l2 = torch.where(small, l, torch.zeros_like(l)) ** 2
        return torch.where(small, math.log(2.0) + l2 / 12 - 7 * l2 ** 2 / 1440, torch.log(a) - torch.log(torch.tanh(a / 2)))

    @property
    def mean(self):
        l = self.logits
        small = l.abs() < self.SERIES
        big = torch.where(small, torch.ones_like(l), l)
        tiny = torch.where(small, l, torch.zeros_like(l))
        return torch.where(small, 0.5 + tiny / 12 - tiny ** 3 / 720, -1 / torch.expm1(-big) - 1 / big)

    def icdf(self, value):
        l = self.logits
        flat = l.abs() < 1e-6  # within 1e-7 of uniform there
        negative = torch.where(flat, -torch.ones_like(l), -l.abs())  # the draw for -|l|, then reflected for l > 0
        u = torch.where(l > 0, 1 - value, value)
        x = torch.log1p(u * torch.expm1(negative)) / negative
        return torch.where(flat, value, torch.where(l > 0, 1 - x, x))

    def expand(self, batch_shape, _instance=None):
        return super().expand(batch_shape, _instance=self._get_checked_instance(LogitContinuousBernoulli, _instance))


@register
class ContinuousBernoulliLikelihood(Likelihood):
    """x ~ ContinuousBernoulli(logits=output) per pixel, for grey levels in [0, 1]
    (Loaiza-Ganem & Cunningham 2019); includes the normalising constant, exact for any logits
    (:class:`LogitContinuousBernoulli`)."""

    name = "continuous-bernoulli"

    def distribution(self, output):
        return self._event(LogitContinuousBernoulli(logits=output, validate_args=False))

    def check_support(self, x, what="the data", hint=None):
        super().check_support(x, what, hint)
        if ((x < 0) | (x > 1)).any():
            raise DataError(
                f"{what} has values outside [0, 1], the continuous Bernoulli's support; "
                + (hint or "scale pixels to [0, 1] or use the 'gaussian' likelihood") + "."
            )


@register
class GaussianLikelihood(Likelihood):
    """x ~ Normal(output, sigma) per pixel with a fixed sigma (``--likelihood-scale``)."""

    name = "gaussian"
    uses_scale = True  # sigma itself (and, for the learned subclasses, its starting value)

    def __init__(self, image_shape, scale=0.1):
        super().__init__(image_shape, scale)
        from pyro_vae.config import _positive  # ModelConfig's check: sigma 0 gave an infinite density

        _positive("likelihood_scale", scale)
        self.register_buffer("fixed_scale", torch.tensor(float(scale)))

    def scale(self) -> torch.Tensor:
        return self.fixed_scale

    def distribution(self, output):
        return self._event(dist.Normal(output, self.scale().expand(output.shape), validate_args=False))

    def mean(self, output):
        return output


class _LearnedScaleGaussian(GaussianLikelihood):
    """Gaussian whose sigma is learned as softplus(raw) + 1e-3; :meth:`param_shape` sets
    how many sigmas (one for all pixels, one per channel, or one per pixel)."""

    # The floor keeps the density bounded. A starting sigma at or below it starts just above it;
    # a new configuration asking for one is refused (it once was not, and config.toml recorded the
    # value asked for), while a saved run's is read as it ran: its sigma is in its checkpoint.
    scale_floor = 1e-3

    def param_shape(self, image_shape) -> tuple[int, ...]:
        return tuple(image_shape)

    def __init__(self, image_shape, scale=0.1):
        super().__init__(image_shape, scale)
        # softplus^{-1}(y) = log(expm1(y)), as y + log(-expm1(-y)), which does not overflow for y above 709
        # (a --likelihood-scale of 710 raised OverflowError); the 1e-6 where scale is within 1e-6 of the floor
        # or below it (expm1(0) = 0 has no log): a saved run asked for one before Config.validate refused it,
        # and make_likelihood is not checked
        above = max(scale - self.scale_floor, 1e-6)
        start = above + math.log(-math.expm1(-above))
        self.raw_scale = nn.Parameter(torch.full(self.param_shape(image_shape), start))

    def scale(self):
        return F.softplus(self.raw_scale) + self.scale_floor


@register
class GlobalScaleGaussianLikelihood(_LearnedScaleGaussian):
    """Gaussian with one learned sigma shared by every pixel."""

    name = "gaussian-learned"

    def param_shape(self, image_shape):
        return (1,)


@register
class ChannelScaleGaussianLikelihood(_LearnedScaleGaussian):
    """Gaussian with one learned sigma per colour channel (shape ``[C, 1, 1]``)."""

    name = "gaussian-learned-per-channel"

    def param_shape(self, image_shape):
        return (image_shape[0], 1, 1)


@register
class PixelScaleGaussianLikelihood(_LearnedScaleGaussian):
    """Gaussian with a learned sigma for every pixel (shape ``[C, H, W]``)."""

    name = "gaussian-learned-per-pixel"


class _EightBit(Likelihood):
    """A probability mass on the 256 grey levels k/255 (see :mod:`pyro_vae.discrete` for the
    grid and the stable log-masses). The decoder's output ``[..., P * C, H, W]`` is read as
    ``P`` maps per channel; ``log_prob`` is in nats per image, a log-probability (<= 0)."""

    data_kind = "8-bit"
    uses_scale = False

    def parameters_of(self, output: torch.Tensor) -> torch.Tensor:
        """``[..., P * C, H, W]`` -> ``[..., P, C, H, W]``."""
        c, h, w = self.image_shape
        return output.reshape(output.shape[:-3] + (self.params_per_channel, c, h, w))

    @staticmethod
    def scale_of(raw: torch.Tensor) -> torch.Tensor:
        return F.softplus(raw) + discrete.SCALE_FLOOR

    def check_support(self, x, what="the data", hint=None):
        super().check_support(x, what, hint)
        if discrete.off_grid(x).any():
            raise DataError(
                f"{what} is not on the 256-level grid k/255 that the {self.name} likelihood gives masses to; "
                + (hint or "give it 8-bit images as loaded (bytes / 255, not binarized) or choose a continuous "
                           "likelihood ('gaussian-learned' or 'continuous-bernoulli')") + "."
            )


@register
class DiscretizedLogisticLikelihood(_EightBit):
    """x ~ DiscretizedLogistic(mu, s) per pixel (PixelCNN++'s form with one component): the
    decoder gives mu and s = softplus(raw) + 1e-4 for every pixel; the edge bins are open."""

    name = "discretized-logistic"
    params_per_channel = 2

    def distribution(self, output):
        loc, raw = self.parameters_of(output).unbind(-4)
        return self._event(discrete.DiscretizedLogistic(loc, self.scale_of(raw), validate_args=False))


@register
class DiscretizedGaussianLikelihood(_EightBit):
    """x ~ DiscretizedNormal(mu, s) per pixel, mu and s from the decoder as for the logistic."""

    name = "discretized-gaussian"
    params_per_channel = 2

    def distribution(self, output):
        loc, raw = self.parameters_of(output).unbind(-4)
        return self._event(discrete.DiscretizedNormal(loc, self.scale_of(raw), validate_args=False))


@register
class DiscretizedLogisticMixtureLikelihood(_EightBit):
    """x ~ sum_m pi_m DiscretizedLogistic(mu_m, s_m) per pixel with M = 5 components (PixelCNN++
    uses 10, with colour channels coupled; here channels are independent given z): the
    decoder gives 3M maps per channel, the weights' logits, the locations and the raw scales."""

    name = "discretized-logistic-mixture"
    components = 5
    params_per_channel = 3 * components

    def distribution(self, output):
        params = self.parameters_of(output)
        params = params.reshape(params.shape[:-4] + (3, self.components) + params.shape[-3:])
        logits, loc, raw = (p.movedim(-4, -1) for p in params.unbind(-5))  # components last
        return self._event(discrete.DiscretizedLogisticMixture(logits, loc, self.scale_of(raw),
                                                               validate_args=False))


@register
class Categorical256Likelihood(_EightBit):
    """x ~ Categorical(softmax(l)) over the 256 levels per pixel: the decoder gives 256
    logits per pixel and channel, so its last layer is 256 times as wide as for a Gaussian."""

    name = "categorical-256"
    params_per_channel = discrete.LEVELS

    def distribution(self, output):
        logits = self.parameters_of(output).movedim(-4, -1)
        return self._event(discrete.Categorical256(logits, validate_args=False))
