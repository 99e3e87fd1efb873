r"""Probability masses on the 256 grey levels of 8-bit images, as Pyro distributions.

The grid. The data loaders scale a byte k = 0..255 to x = k / 255 in [0, 1]. Level k owns
the bin of width w = 1/255 centred on it,

.. math::

    B_k = [(k - 1/2) / 255, (k + 1/2) / 255), \qquad B_0 = (-\infty, 1/(2 \cdot 255)),
    \quad B_{255} = [254.5 / 255, \infty),

so the bins partition the real line and a continuous density f (logistic, normal) gives
level k the mass P(k) = F(upper_k) - F(lower_k), with the edge bins open as in PixelCNN++
(Salimans et al. 2017). This is PixelCNN++'s grid mapped from [-1, 1] (bin width 2/255)
to [0, 1] by y = (x + 1) / 2; the masses are the same.

Stability. Every mass is computed as a log, without subtracting two CDFs that are both
near 1 (or near 0):

* logistic: sigma(b) - sigma(a) = sigma(b) sigma(-a) (1 - e^{a - b}) exactly, so
  log P = -softplus(-b) - softplus(a) + log(-expm1(a - b)), finite for every a < b;
* normal: the bin is reflected to the lower half of the line (Phi(b) - Phi(a) =
  Phi(-a) - Phi(-b)) and log P = log Phi(b) + log(1 - exp(log Phi(a) - log Phi(b))) with
  a tail-safe log Phi (:func:`log_ndtr`); where the bin is under 1e-3 scales wide (a very wide
  normal) the midpoint rule log(w f(c)) is used instead, accurate to about 1e-7 there.

Scales come from the decoder through softplus plus a floor (:data:`SCALE_FLOOR`, 1e-4:
the bin is then 39 scales wide and a well-placed level can reach mass 1 - 2e-17).
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.nn import functional as F

LEVELS = 256
#: Width of one grey level's bin, in pixel units ([0, 1] scaled by 255).
BIN_WIDTH = 1.0 / (LEVELS - 1)
#: Smallest scale of a discretized logistic or normal, in pixel units.
SCALE_FLOOR = 1e-4
#: How far (in pixel units) a value may be from its level k/255 and still count as on the grid:
#: float32 k/255 is within 6e-8 of it, any other grey level at least 1/255 away.
GRID_TOLERANCE = 1e-4


def levels(x: torch.Tensor) -> torch.Tensor:
    """The level k = round(255 x) of each value, as int64 (no check; see :func:`off_grid`)."""
    return torch.round(x * (LEVELS - 1)).clamp(0, LEVELS - 1).long()


def off_grid(x: torch.Tensor) -> torch.Tensor:
    """True where ``x`` is not one of the 256 levels k/255 (to :data:`GRID_TOLERANCE`)."""
    k = torch.round(x * (LEVELS - 1))
    return ~torch.isfinite(x) | (k < 0) | (k > LEVELS - 1) | ((x - k / (LEVELS - 1)).abs() > GRID_TOLERANCE)


def log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - e^{d}) for d < 0, stable near 0 and for very negative d (Maechler 2012).

    Each branch sees only arguments it is finite at (d is also kept below -1e-30), so the
    branch ``torch.where`` does not take cannot put a NaN into the gradient."""
    d = d.clamp(max=-1e-30)
    near_zero = d > -math.log(2)
    return torch.where(near_zero, torch.log(-torch.expm1(torch.where(near_zero, d, -1.0))),
                       torch.log1p(-torch.exp(torch.where(near_zero, -1.0, d))))


def log_ndtr(x: torch.Tensor) -> torch.Tensor:
    """log Phi(x), with a gradient that stays finite far in the lower tail.

    ``torch.special.log_ndtr``'s backward computes phi(x) / Phi(x) as the exponential of a
    difference of two numbers near -x^2/2, which for x < -1e3 in float32 loses all digits
    (NaN at the scale floor with the mean a few units away). Below x = -20 the asymptotic
    series log Phi(x) = -x^2/2 - log(-x) - log(2 pi)/2 + log(1 - 1/x^2 + 3/x^4) is used
    instead (relative error below 15/x^6 = 2e-7)."""
    tail = x < -20
    xt = torch.where(tail, x, torch.full_like(x, -20.0))
    series = -0.5 * xt**2 - torch.log(-xt) - 0.5 * math.log(2 * math.pi) + torch.log1p(-1 / xt**2 + 3 / xt**4)
    return torch.where(tail, series, torch.special.log_ndtr(torch.where(tail, torch.zeros_like(x), x)))


def bin_edges(k: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper edges of level ``k``'s bin (finite: callers treat the edge bins).

    Both come from the half-integer j - 1/2 times the width, so the upper edge of k and the
    lower edge of k + 1 are the same float and the masses of neighbouring bins meet exactly
    (centre +- width/2 rounds differently on each side: a 1e-4 error at the scale floor)."""
    k = k.to(dtype)
    return (k - 0.5) * BIN_WIDTH, (k + 0.5) * BIN_WIDTH


def logistic_log_mass(k: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log P(level k) of the discretized Logistic(loc, scale), open edge bins; broadcasts."""
    lower, upper = bin_edges(k, loc.dtype)
    a, b = (lower - loc) / scale, (upper - loc) / scale
    interior = -F.softplus(-b) - F.softplus(a) + log1mexp(a - b)
    return torch.where(k == 0, -F.softplus(-b), torch.where(k == LEVELS - 1, -F.softplus(a), interior))


def normal_log_mass(k: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log P(level k) of the discretized Normal(loc, scale), open edge bins; broadcasts."""
    lower, upper = bin_edges(k, loc.dtype)
    a, b = (lower - loc) / scale, (upper - loc) / scale
    upper_half = a + b > 0  # reflect so that the bin lies mostly below the mean
    a, b = torch.where(upper_half, -b, a), torch.where(upper_half, -a, b)
    log_b = log_ndtr(b)
    # Clamped below 0 so that the branch not taken has a finite gradient too.
    exact = log_b + log1mexp(log_ndtr(a) - log_b)
    centre = (k.to(loc.dtype) * BIN_WIDTH - loc) / scale
    midpoint = -0.5 * centre**2 - 0.5 * math.log(2 * math.pi) + torch.log(b - a)
    interior = torch.where(b - a < 1e-3, midpoint, exact)
    a_raw, b_raw = (lower - loc) / scale, (upper - loc) / scale
    return torch.where(k == 0, log_ndtr(b_raw),
                       torch.where(k == LEVELS - 1, log_ndtr(-a_raw), interior))


class DiscreteGrid(TorchDistribution):
    """A distribution over the 256 levels k/255 per element; ``log_prob(x)`` reads each
    value's level (values are checked to be on the grid once, at the data boundary).

    Subclasses implement :meth:`log_mass` ``(k) -> log P(k)`` for int64 levels ``k`` that
    broadcast against the batch shape, and :meth:`expand`, and hold a tensor ``loc`` (on the
    levels' device) or override :meth:`log_masses`. ``mean`` and ``sample`` go
    through all 256 masses, ``[256, *batch]`` (fine for figures; training never calls them).
    """

    arg_constraints: dict = {}
    support = constraints.real

    def log_mass(self, k: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.log_mass(levels(value))

    def log_masses(self) -> torch.Tensor:
        """log P(k) for every level: ``[256, *batch_shape]``."""
        k = torch.arange(LEVELS, device=self.loc.device).reshape((LEVELS,) + (1,) * len(self.batch_shape))
        return self.log_mass(k)

    @property
    def mean(self) -> torch.Tensor:
        grid = torch.arange(LEVELS, dtype=torch.get_default_dtype()) * BIN_WIDTH
        masses = self.log_masses().exp()
        return torch.tensordot(grid.to(masses), masses, dims=([0], [0]))

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            logits = self.log_masses().movedim(0, -1)
            k = torch.distributions.Categorical(logits=logits).sample(sample_shape)
            return k.to(logits.dtype) * BIN_WIDTH


class DiscretizedLogistic(DiscreteGrid):
    """Logistic(loc, scale) integrated over each level's bin; ``loc``, ``scale`` ``[*batch]``
    in pixel units."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args=None):
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def log_mass(self, k):
        return logistic_log_mass(k, self.loc, self.scale)

    def expand(self, batch_shape, _instance=None):
        return type(self)(self.loc.expand(batch_shape), self.scale.expand(batch_shape))


class DiscretizedNormal(DiscretizedLogistic):
    """Normal(loc, scale) integrated over each level's bin."""

    def log_mass(self, k):
        return normal_log_mass(k, self.loc, self.scale)


class DiscretizedLogisticMixture(DiscreteGrid):
    """sum_m pi_m DiscretizedLogistic(loc_m, scale_m): ``logits``, ``loc``, ``scale``
    ``[*batch, M]`` (components last); log P(k) = logsumexp_m(log pi_m + log P_m(k))."""

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, validate_args=None):
        self.logits, self.loc, self.scale = torch.broadcast_tensors(logits, loc, scale)
        super().__init__(self.loc.shape[:-1], validate_args=validate_args)

    def log_mass(self, k):
        per_component = logistic_log_mass(k.unsqueeze(-1), self.loc, self.scale)
        return torch.logsumexp(F.log_softmax(self.logits, -1) + per_component, -1)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.loc.shape[-1:]
        return type(self)(self.logits.expand(shape), self.loc.expand(shape), self.scale.expand(shape))


class Categorical256(DiscreteGrid):
    """A free softmax over the 256 levels: ``logits`` ``[*batch, 256]``."""

    def __init__(self, logits: torch.Tensor, validate_args=None):
        self.logits = logits
        super().__init__(logits.shape[:-1], validate_args=validate_args)

    def log_mass(self, k):
        log_p = F.log_softmax(self.logits, -1)
        shape = torch.broadcast_shapes(k.shape, log_p.shape[:-1])
        return log_p.expand(shape + log_p.shape[-1:]).gather(-1, k.expand(shape).unsqueeze(-1)).squeeze(-1)

    def log_masses(self):
        return F.log_softmax(self.logits, -1).movedim(-1, 0)

    def expand(self, batch_shape, _instance=None):
        return type(self)(self.logits.expand(torch.Size(batch_shape) + self.logits.shape[-1:]))
