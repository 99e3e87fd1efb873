"""Distribution helpers of the training and evaluation hot paths."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.poutine.broadcast_messenger import BroadcastMessenger
from pyro.poutine.indep_messenger import IndepMessenger
from pyro.poutine.plate_messenger import PlateMessenger
from pyro.poutine.subsample_messenger import SubsampleMessenger
from torch.distributions.utils import _standard_normal

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # the constant torch's Normal.log_prob subtracts


class Event(dist.Independent):
    """``Independent(base, n)`` (``base.to_event(n)``) whose ``expand`` to the batch shape it
    already has returns itself. A plate broadcasts every sample site's distribution by
    ``expand``, which for ``Independent`` builds a new one and a new base (20-30 us on the
    benchmark machine, three times a VAE step) even when nothing changes; a distribution is
    immutable, so the same object serves. Any other expansion is ``Independent``'s."""

    def expand(self, batch_shape, _instance=None):
        if _instance is None and torch.Size(batch_shape) == self.batch_shape:
            return self
        return super().expand(batch_shape, _instance)

    def log_prob(self, value):
        if self.reinterpreted_batch_ndims == 1:  # Independent's reshape to the same shape left out
            return self.base_dist.log_prob(value).sum(-1)
        return super().log_prob(value)


def _same_shape_tensors(*values) -> bool:
    """Every value a tensor and all of one shape: ``broadcast_all`` would return views of them
    as they are (the same values), so a distribution may keep them without it."""
    shape = values[0].shape if isinstance(values[0], torch.Tensor) else None
    return shape is not None and all(isinstance(v, torch.Tensor) and v.shape == shape for v in values)


#: Name of the class attribute by which a ``Normal`` subclass says that its draws are
#: ``Normal.rsample``'s (loc + eps * scale, eps ~ N(0, 1)), so a handler that supplies the
#: noise itself (the distributed trainer's ``GlobalBatchNoise``) may draw for it.
DRAWS_AS_NORMAL = "draws_as_normal"


class SameShapeNormal(dist.Normal):
    """A :class:`~pyro.distributions.Normal` built from ``loc`` and ``scale`` tensors of one
    shape without ``broadcast_all`` (about 15 us of Python a distribution; the networks give
    both heads one shape); any other arguments are ``Normal``'s. Same attributes, batch shape,
    validation and draws as ``Normal``."""

    draws_as_normal = True  # DRAWS_AS_NORMAL

    def __init__(self, loc, scale, validate_args=None):
        if not _same_shape_tensors(loc, scale):
            super().__init__(loc, scale, validate_args=validate_args)
            return
        self.loc, self.scale = loc, scale
        torch.distributions.Distribution.__init__(self, loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        # torch asks a subclass with its own __init__ for its own expand: Normal's, into this class
        return super().expand(batch_shape, _instance=self._get_checked_instance(SameShapeNormal, _instance))


class DrawNoiseNormal(SameShapeNormal):
    r"""A :class:`~pyro.distributions.Normal` that keeps the standard-normal noise of its
    latest reparameterized draw and reads its log-density at that very draw from the noise:

    .. math:: z = \mu + \sigma \epsilon, \qquad
              \log N(z; \mu, \sigma) = -\tfrac{1}{2} \epsilon^2 - \log \sigma - \log\sqrt{2\pi},

    instead of ``Normal.log_prob``'s ``-(z - \mu)^2 / (2 \sigma^2) - \log\sigma - \log\sqrt{2\pi}``
    (four tensor operations fewer forward, and their backward). The two are equal as
    functions of (mu, sigma, epsilon), and so are their total gradients with respect to mu
    and sigma (through z and directly): d/dmu = 0 and d/dsigma = -1/sigma in both; in floating
    point they agree to rounding (``z - mu`` is not ``sigma * epsilon`` bit for bit).

    Only a value that *is* the latest draw (the same tensor object, as a Pyro trace holds
    it) takes this path; any other value (a replayed or given z, as the DReG gradient's and
    the estimator's frozen guide evaluate) is ``Normal.log_prob``'s. Draws are ``Normal``'s
    bit for bit (the same noise call and the same ``mu + epsilon * sigma``)."""

    _draw: tuple[torch.Tensor, torch.Tensor] | None = None
    #: The scale as built, where this distribution is an ``expand`` of it (an importance-sample
    #: or particle plate's K copies): without a gradient to it (the estimator) log sigma is then
    #: taken of the ``[B, L]`` scales, not of their ``[K, B, L]`` expanded view, and broadcast
    #: (the same values, K times fewer logs).
    _unexpanded_scale: torch.Tensor | None = None

    def expand(self, batch_shape, _instance=None):
        new = super().expand(batch_shape, _instance=self._get_checked_instance(DrawNoiseNormal, _instance))
        new._unexpanded_scale = self.scale if self._unexpanded_scale is None else self._unexpanded_scale
        return new

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        return self.draw_with(_standard_normal(shape, dtype=self.loc.dtype, device=self.loc.device))

    def draw_with(self, eps: torch.Tensor) -> torch.Tensor:
        """The draw ``loc + eps * scale`` for standard-normal noise ``eps`` given from outside
        (as torch's ``Normal.rsample`` computes it from its own), kept as this distribution's
        latest draw: the distributed trainer's ``GlobalBatchNoise`` supplies the noise so."""
        value = self.loc + eps * self.scale
        self._draw = (value, eps)
        return value

    def log_prob(self, value):
        draw = self._draw
        if draw is None or value is not draw[0]:
            return super().log_prob(value)
        eps = draw[1]
        scale = self._unexpanded_scale
        if scale is None or (scale.requires_grad and torch.is_grad_enabled()):
            # With a gradient (particles in training) the log of the expanded view, as before: its
            # gradient to sigma is summed after the division by sigma, so training is bit for bit.
            scale = self.scale
        # The constant joins the noise's term, which needs no gradient: one autograd node fewer.
        return ((eps * eps) * -0.5 - _LOG_SQRT_2PI) - scale.log()


class FullPlate(PlateMessenger):
    """``pyro.plate(name, size)`` over all of its size (no subsampling) without the plate's
    subsample statement: a ``pyro.plate`` with a size issues a ``_Subsample`` sample site and
    builds ``arange(size)`` every time it is made, which is about 45 us on the benchmark
    machine, twice a VAE step (model and guide) and once more for a particle or
    importance-sample plate, for indices a full plate never uses.

    Inside it, sites are what ``pyro.plate(name, size)`` makes of them: the same
    ``cond_indep_stack`` frame (name, dim, size = full size, counter), the same broadcasting,
    the same scale (``size / size``). What a trace records differs only by the absent
    subsample site, as for a ``pyro.plate`` made without a size; ``with FullPlate(...) as ind``
    gives ``None`` rather than the indices."""

    def __init__(self, name: str, size: int, dim: int | None = None, device=None):
        self.subsample_size = size
        IndepMessenger.__init__(self, name, size, dim, device)
        self._indices = None

    def _process_message(self, msg):
        # PlateMessenger's: the frame and scale, then the broadcast. Pyro wraps the broadcast in
        # ignore_jit_warnings, a context manager that does something only under the JIT's
        # tracer; outside it the wrapped function is called as is (a generator and a context
        # fewer, per site and plate: the estimator's and the step's fixed cost, issue #16).
        SubsampleMessenger._process_message(self, msg)
        if torch._C._get_tracing_state():
            BroadcastMessenger._pyro_sample(msg)
        else:
            _BROADCAST(msg)


#: BroadcastMessenger._pyro_sample without its ignore_jit_warnings wrapper (the same function
#: when a Pyro version does not wrap it).
_BROADCAST = getattr(BroadcastMessenger._pyro_sample, "__wrapped__", BroadcastMessenger._pyro_sample)


#: Terms more than this many nats below a logsumexp's largest count as e^-80 of it (~1.8e-35),
#: whatever they are: less than half an ulp of the sum (at least 1 there) in float32 and float64.
LOGSUMEXP_FLOOR = 80.0


def logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    r"""``torch.logsumexp(x, dim)``: :math:`m + \log \sum_i e^{x_i - m}`, m the largest term,
    with each :math:`x_i - m` raised to at least -:data:`LOGSUMEXP_FLOOR` before ``exp``.

    Why: on the CPU, torch's vectorized ``exp`` takes a path about 13x slower for a block of
    arguments with one below about -87 (where float32's results turn subnormal), and a
    mixture's far components lie thousands of nats below its nearest. A raised term adds at
    most e^-80 to a sum of at least 1, which rounds it away in float32 and float64 (a million
    such terms add 1.8e-29), so the value is torch's; the gradient is softmax(x) as torch's,
    with 0 for the raised terms (torch's: below 1.8e-35). Rows of -inf give -inf, an inf
    gives inf and a NaN NaN, as in torch. ``x``'s shape less ``dim``, nats.
    """
    top = x.detach().amax(dim, keepdim=True)
    shift = top.masked_fill(~torch.isfinite(top), 0.0)  # as torch: inf - inf would be NaN
    shifted = x - shift
    if shifted.requires_grad:
        total = shifted.clamp_min(-LOGSUMEXP_FLOOR).exp().sum(dim).log()
    else:  # the temporary is ours: no second buffer of x's size
        total = shifted.clamp_min_(-LOGSUMEXP_FLOOR).exp_().sum(dim).log_()
    # A row of -inf: every term was raised to e^-80, where torch's sum is 0.
    return (total + shift.squeeze(dim)).masked_fill(top.squeeze(dim) == -math.inf, -math.inf)
