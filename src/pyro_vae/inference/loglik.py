r"""Held-out marginal likelihood log p(x) by importance sampling from the guide.

For each example, with z_1..z_K ~ q(z | x),

.. math::

    \log \hat p(x) = \operatorname{logsumexp}_k [\log p(x, z_k) - \log q(z_k | x)] - \log K,

a stochastic lower bound on log p(x) in expectation (the IWAE bound) that tightens as
K grows and equals the ELBO's estimator at K = 1. The weights come from Pyro traces of
the model replayed on the guide's draws, vectorized over K by a plate to the left of the
model's own plates, so any model/guide pair of the package gets the estimator for free.

Memory stays bounded by working in chunks of examples and of samples; chunks over K are
merged with ``logaddexp``, which is exact, so on the same draws the chunk sizes do not change
the result (they do decide which of a seed's draws go to which example).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from pyro_vae.counts import is_whole_number
from pyro_vae.distributions import FullPlate
from pyro_vae.errors import ConfigError, DataError
from pyro_vae.inference.programs import evaluation_mode, in_eval_mode
from pyro_vae.inference.kinds import BINARY_MASS, COMPLETION, DENSITY, GIVEN_LABEL, MARGINAL, number_kind
from pyro_vae.inference.randomness import random_state_kept
from pyro_vae.inference.weights import (MAX_PLATE_NESTING, check_one_value_per_example, guide_and_model_sites,
                                       log_importance_weights)
from pyro_vae.memory import MMAP_THRESHOLD_BYTES
from pyro_vae.models.priors import fixed_priors


#: Example-samples per chunk at most: [10,000 x 784] logits are 31 MB, and the conv
#: decoder's largest feature maps [10,000 x 32 x 14 x 14] are 250 MB each (peak about 1 GiB).
CHUNK_EXAMPLE_SAMPLES = 10_000
#: On the CPU a chunk's decoder output stays under this many bytes, the mmap threshold that
#: ``pyro-vae`` fixes (:mod:`pyro_vae.memory`) less a page for the allocator's headers: the
#: chunk's tensors then come back from the heap every chunk, where a fresh mmap of each would
#: fault in every page (784-pixel images: 1,336 rows; issue #16, fourth pass).
CPU_CHUNK_BYTES = MMAP_THRESHOLD_BYTES - 4096


def chunk_budget(x: torch.Tensor, params_per_channel: int = 1) -> int:
    """Example-samples per chunk for examples ``x`` ``[N, ...]`` whose decoder reads
    ``params_per_channel`` numbers per value: at most :data:`CHUNK_EXAMPLE_SAMPLES` /
    ``params_per_channel``, and on the CPU also at most as many as keep the decoder's output
    (``params_per_channel * x[0].numel()`` floats of ``x``'s size a row) under
    :data:`CPU_CHUNK_BYTES`. Other devices (CUDA's caching allocator reuses its blocks) get the
    larger chunks, which keep a GPU busy."""
    budget = max(1, CHUNK_EXAMPLE_SAMPLES // params_per_channel)
    if x.device.type == "cpu":
        row_bytes = params_per_channel * math.prod(x.shape[1:]) * x.element_size()  # no view of x[0] (fixed cost)
        budget = min(budget, max(1, CPU_CHUNK_BYTES // row_bytes))
    return budget


class LogMeanExp:
    """Streams log-weights ``[k, B]`` in chunks, keeping logsumexp of w and of w^2.

    ``log_mean`` is log (1/K) sum_k w_k, and ``ess`` the effective sample size
    (sum w)^2 / sum w^2, between 1 and K; both are exact whatever the chunking.
    """

    def __init__(self):
        self.count = 0
        self.lse = None
        self.lse_sq = None

    def update(self, log_w: torch.Tensor) -> None:
        chunk, chunk_sq = torch.logsumexp(log_w, 0), torch.logsumexp(2 * log_w, 0)
        if self.lse is None:
            self.lse, self.lse_sq = chunk, chunk_sq
        else:  # in place: no new tensor a chunk for the running sums
            torch.logaddexp(self.lse, chunk, out=self.lse)
            torch.logaddexp(self.lse_sq, chunk_sq, out=self.lse_sq)
        self.count += log_w.shape[0]

    @property
    def log_mean(self) -> torch.Tensor:
        return self.lse - math.log(self.count)

    @property
    def ess(self) -> torch.Tensor:
        return torch.exp(2 * self.lse - self.lse_sq)


@dataclass
class LogLikelihoodEstimate:
    """Per-example importance-sampling estimates: ``log_likelihood`` and ``ess`` ``[N]``, with
    what they are: ``kind`` (:mod:`pyro_vae.inference.kinds`: a probability mass on binary or
    8-bit data, a density, a dequantized bound) and ``quantity`` ("log p(x)", the conditional
    VAE's "log p(x | y)", ...). A model without a pyro-vae likelihood gets its kind from its
    observed sites (:func:`kind_of_observed_sites`), None where they do not tell."""

    log_likelihood: torch.Tensor
    ess: torch.Tensor
    k: int
    seconds: float = 0.0
    kind: str | None = None
    quantity: str | None = None
    #: The weights each example's ESS is over, so at most: K, or C * K where a label's C classes
    #: are summed out (M2's log p(x), :func:`~pyro_vae.inference.semisupervised.marginal_log_likelihood`).
    draws: int | None = None

    def __post_init__(self):
        if self.draws is None:
            self.draws = self.k

    @property
    def mean(self) -> float:
        """Mean log p(x) over examples, nats per example."""
        return self.log_likelihood.mean().item()

    @property
    def stderr(self) -> float:
        """Standard error of ``mean`` over examples, nats (NaN for a single example, whose mean
        has no spread to estimate it from; not 0, which would claim an exact estimate)."""
        n = self.log_likelihood.numel()
        return (self.log_likelihood.std() / math.sqrt(n)).item() if n > 1 else math.nan

    def summary(self) -> dict:
        """The estimate in numbers, each with what it is: mean and standard error over the
        examples, its unit, kind and quantity, K, and the effective sample sizes."""
        return {
            "log_likelihood_mean": self.mean,
            "log_likelihood_stderr": self.stderr,
            "unit": "nats per example",
            "kind": self.kind or "not known (the model has no pyro-vae likelihood)",
            "quantity": self.quantity,
            "k": self.k,
            "examples": self.log_likelihood.numel(),
            "ess_mean": self.ess.mean().item(),
            "ess_min": self.ess.min().item(),
            "ess_of": self.draws,
            "seconds": self.seconds,
        }


def check_examples_fit_programs(model, guide, x: torch.Tensor, what: str = "the examples",
                                encode_one: bool = True) -> None:
    """Refuse float examples ``x`` ``[N, ...]`` that the programs cannot read: of another dtype
    than their parameters (float64 from NumPy met float32 weights as torch's "mat1 and mat2 must
    have the same dtype"), or of another shape than the model's decoder makes (a size mismatch
    deep in the likelihood), and with ``encode_one`` a guide that is not the model's pair
    (:func:`_check_guide_fits_model`, which encodes one example; a caller that runs the programs
    anyway can instead call it when they fail, as the estimator does). ``what`` names the
    examples in the sentence."""
    for program in (guide, model):  # the guide reads x first
        parameters = program.parameters() if isinstance(program, torch.nn.Module) else ()
        parameter = next((p for p in parameters if p.is_floating_point()), None)
        if parameter is not None and parameter.dtype != x.dtype:
            raise DataError(f"{what} are {x.dtype} but the model's parameters are {parameter.dtype}; pass "
                            f"x.to({parameter.dtype}) (or convert the model and guide with .to({x.dtype})).")
    expected = getattr(getattr(model, "decoder", None), "image_shape", None)
    if expected is not None and tuple(x.shape[1:]) != tuple(expected):
        raise DataError(f"{what} have shape {tuple(x.shape[1:])} but the model expects {tuple(expected)}.")
    if encode_one:
        _check_guide_fits_model(model, guide, x, what)


def _check_guide_fits_model(model, guide, x: torch.Tensor, what: str) -> None:
    """Refuse a guide that is not the model's pair: one built for images of another shape, or
    whose code has another size than the model's latent (torch said "mat1 and mat2 shapes
    cannot be multiplied" deep in a network). Checked by encoding one example, where the guide
    encodes images alone (a guide that also needs a label is not checked here)."""
    encode, latent = getattr(guide, "encode", None), getattr(model, "latent_dim", None)
    if not callable(encode) or latent is None or getattr(model, "hierarchical", False) or not isinstance(
            guide, torch.nn.Module):
        return
    parameter = next(guide.parameters(), None)
    one = x[:1].to(parameter.device) if parameter is not None else x[:1]
    try:
        with torch.no_grad(), evaluation_mode(guide):  # a batch-normalised guide's statistics stay as they are
            loc = encode(one)[0]
    except TypeError:  # it needs more than images (a label): not checked here
        return
    except RuntimeError:
        raise DataError(f"the guide cannot encode {what} (shape {tuple(x.shape[1:])}): it was built for images of "
                        "another shape; build the model and guide for these images (build_vae(config, "
                        "image_shape) returns a matching pair).") from None
    if loc.shape[-1] != latent:
        raise DataError(f"the guide's code has {loc.shape[-1]} dimensions but the model's latent has {latent}; "
                        "give the guide built with the model (build_vae returns a matching pair).")


def _check_input(model, guide, x, k: int, batch_size: int | None = None, k_chunk: int | None = None) -> None:
    """Once per call, at the boundary: K and the chunk sizes, the tensor, and the likelihood's support."""
    if not getattr(model, "has_marginal_likelihood", True):
        raise ConfigError("a plain autoencoder has no prior p(z) and so no log p(x) to estimate; compare its "
                          "reconstruction log p(x | code) instead, or train a VAE for a held-out likelihood.")
    if not is_whole_number(k) or k < 1:
        raise ConfigError(f"K (--k) must be a whole number of at least 1, not {k!r}.")
    for option, size in (("batch_size", batch_size), ("k_chunk", k_chunk)):  # 0 was range()'s "arg 3 must not be zero"
        if size is not None and (not is_whole_number(size) or size < 1):
            raise ConfigError(f"{option} must be a whole number of at least 1, or None for the chunk that fits "
                              f"the memory budget, not {size!r}.")
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise DataError(f"log p(x) needs a float tensor of examples, not {getattr(x, 'dtype', type(x))}.")
    if x.dim() == 0 or x.shape[0] == 0:
        raise DataError("log p(x) needs at least one example (the tensor is empty).")
    # The guide's pairing with the model is checked only if the programs fail (importance_log_likelihood):
    # encoding one example on every call was a fifth of a small call's cost (issue #16).
    check_examples_fit_programs(model, guide, x, encode_one=False)
    likelihood = getattr(model, "likelihood", None)
    if likelihood is not None:
        likelihood.check_support(x, "the tensor of examples")  # a singular subject: "... has grey-level pixels"
    elif not torch.isfinite(x).all():
        raise DataError("the examples contain NaN or infinite values.")


def _check_labels(model, x: torch.Tensor, inputs: dict) -> None:
    """The inputs chunked with ``x`` (a conditional model's labels ``y``): one per example, and a
    label model's in 0..C-1; a model that needs labels gets them (torch said "forward() missing
    1 required positional argument: 'y'", or "Attempting to broadcast a dimension")."""
    classes = getattr(model, "num_classes", 0)
    if getattr(model, "needs_labels", False) and "y" not in inputs:
        raise DataError(f"this model is conditioned on the class label: pass y=labels (a long tensor of one "
                        f"label in 0..{classes - 1} per example).")
    for name, value in inputs.items():
        if torch.is_tensor(value) and len(value) != len(x):
            raise DataError(f"{name} has {len(value)} entries for {len(x)} examples; give one per example.")
    y = inputs.get("y")
    if classes and torch.is_tensor(y) and len(y) and (y.min() < 0 or y.max() >= classes):
        raise DataError(f"y has labels outside 0..{classes - 1}, the classes of this model.")


def _priors_fixed(estimator: Callable) -> Callable:
    """Run ``estimator(model, ...)`` with the model's priors fixed (:func:`fixed_priors`): a
    mixture prior is then computed once per call rather than once per chunk (issue #19)."""
    @functools.wraps(estimator)
    def wrapper(model, *args, **kwargs):
        with fixed_priors(model):
            return estimator(model, *args, **kwargs)
    return wrapper


@in_eval_mode
@_priors_fixed
def importance_log_likelihood(model: Callable, guide: Callable, x: torch.Tensor, *, k: int,
                              batch_size: int | None = None, k_chunk: int | None = None,
                              max_plate_nesting: int = MAX_PLATE_NESTING,
                              progress: bool | Callable[[int, int], None] = False,
                              **kwargs) -> LogLikelihoodEstimate:
    """Estimate log p(x) for every example of ``x`` ``[N, ...]`` with ``k`` guide samples.

    Examples go through in chunks of ``batch_size`` and samples in chunks of ``k_chunk``.
    By default a chunk holds :func:`chunk_budget` example-samples (on the CPU 1,336 for
    784-pixel images, elsewhere 10,000; either keeps the MLP and conv models well under
    2 GiB at any K), split over examples first so that each example's K samples share one
    pass of the encoder where they fit. The chunking decides which random draws go where,
    so the same seed gives other draws (and another estimate of the same quantity) on the
    CPU than on a GPU; on the same draws the estimate does not depend on it. Tensors in
    ``kwargs`` (labels, say) are chunked along their first dimension with ``x``; the model and guide are
    called as ``model(x_chunk, **kwargs_chunk)``. ``progress``: True for a tqdm bar, or a
    callable told ``(examples done, len(x))`` after every chunk of examples. The model and
    guide are evaluated in evaluation mode (batch normalisation by its running statistics)
    and left in the mode each of their modules was in.
    """
    _check_input(model, guide, x, k, batch_size, k_chunk)
    if not is_whole_number(max_plate_nesting) or max_plate_nesting < 1:
        # 0 collided with the data plate ("Shape mismatch inside plate('importance_samples')"), -1 and 1.5 failed
        # with "Expected dim < 0 to index from the right" and "list indices must be integers"
        raise ConfigError(f"max_plate_nesting must be a whole number of at least 1 (the data plate and the plates "
                          f"nested inside it), not {max_plate_nesting!r}.")
    # NumPy integers as Python's (recorded in the estimate, and written to JSON)
    k, max_plate_nesting = int(k), int(max_plate_nesting)
    batch_size, k_chunk = (None if size is None else int(size) for size in (batch_size, k_chunk))
    _check_labels(model, x, kwargs)
    # A likelihood that reads P maps per channel (256 for a categorical) makes the decoder's
    # output P times as large, so a chunk holds P times fewer example-samples.
    budget = chunk_budget(x, getattr(getattr(model, "likelihood", None), "params_per_channel", 1))
    if batch_size is None:
        batch_size = max(1, min(100, budget // k))
    if k_chunk is None:
        k_chunk = max(1, min(k, budget // max(1, min(batch_size, len(x)))))
    start_time = time.perf_counter()
    starts = range(0, len(x), batch_size)
    if progress is True:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"log p(x), K={k}", unit="batch", leave=False)
    try:
        estimates, ess = _estimate_in_chunks(model, guide, x, k, batch_size, k_chunk, max_plate_nesting, progress,
                                             starts, kwargs)
    except (RuntimeError, ValueError):  # torch's "mat1 and mat2 shapes cannot be multiplied", say
        _check_guide_fits_model(model, guide, x, "the examples")  # a sentence where the guide is not the model's pair
        raise
    kind = (kind_of_scores(model, x) if hasattr(model, "likelihood")
            else kind_of_observed_sites(model, guide, x, kwargs, max_plate_nesting))
    return LogLikelihoodEstimate(estimates.cpu(), ess.cpu(), k, time.perf_counter() - start_time,
                                 kind, quantity_of_scores(model, kwargs))


def _estimate_in_chunks(model, guide, x: torch.Tensor, k: int, batch_size: int, k_chunk: int,
                        max_plate_nesting: int, progress, starts, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The loop of :func:`importance_log_likelihood`: log p(x) and the ESS ``[N]`` of every example."""
    # The results go into two [N] tensors allocated once, not one small tensor per chunk of
    # examples kept in a list: on the CPU such survivors are carved from the heap's holes between
    # the chunks' 4 MB tensors, and each one that lands in a hole can leave the next chunk's
    # tensors no room there, so the heap grows by a hole per image (issue #16, tenth pass).
    estimates = ess = None
    for start in starts:
        rows = slice(start, start + batch_size)
        chunk_kwargs = {key: value[rows] if torch.is_tensor(value) else value
                        for key, value in kwargs.items()}
        accumulator = LogMeanExp()
        for k_start in range(0, k, k_chunk):
            log_w = log_importance_weights(model, guide, x[rows], k=min(k_chunk, k - k_start),
                                           max_plate_nesting=max_plate_nesting, **chunk_kwargs)
            # a model without a data plate gives one joint number for the chunk: refused
            check_one_value_per_example(log_w, min(batch_size, len(x) - start))
            accumulator.update(log_w)
        if batch_size >= len(x):  # one chunk of examples: its results are the results (no buffer, no copy)
            estimates, ess = accumulator.log_mean, accumulator.ess
        else:
            if estimates is None:  # the log-weights' dtype and device
                estimates, ess = accumulator.lse.new_empty(len(x)), accumulator.lse.new_empty(len(x))
            estimates[rows] = accumulator.log_mean
            ess[rows] = accumulator.ess
        if callable(progress):
            progress(min(start + batch_size, len(x)), len(x))
    return estimates, ess


def kind_of_observed_sites(model: Callable, guide: Callable, x: torch.Tensor, inputs: dict,
                           max_plate_nesting: int = MAX_PLATE_NESTING) -> str | None:
    """The kind of number a model without a pyro-vae likelihood (a researcher's own program)
    gives the images ``x``, read from its observed sites on one example and one draw, run as the
    estimator runs it (in the importance-sample plate): a mass on binary data where they are all
    discrete (a Bernoulli) and ``x`` is 0/1, a density where they are all continuous (a Normal, a
    continuous Bernoulli); None otherwise (a mass on other data, both, or a program that cannot
    run so). The draw leaves the caller's random states as they were."""
    rows = {key: value[:1] if torch.is_tensor(value) else value for key, value in inputs.items()}
    try:
        with torch.no_grad(), random_state_kept(), \
                FullPlate("importance_samples", 1, dim=-(max_plate_nesting + 1)):
            _, model_sites = guide_and_model_sites(model, guide, x[:1], **rows)
    except Exception:  # noqa: BLE001 - the kind is a label: a program with state of its own gets none, not a failure
        return None
    discrete = {bool(site["fn"].support.is_discrete) for site in model_sites.values() if site["is_observed"]}
    if discrete == {False}:
        return DENSITY
    if discrete == {True} and bool(((x == 0) | (x == 1)).all()):
        return BINARY_MASS
    return None


def kind_of_scores(model, x: torch.Tensor) -> str | None:
    """The kind of number (:func:`~pyro_vae.inference.kinds.number_kind`) that ``model``'s
    likelihood gives the images ``x`` as they are: a mass on binary data for 0/1 images (or
    any Bernoulli's), a mass on 8-bit data for a discretized likelihood on grey levels, a
    density for a continuous one (which :mod:`pyro_vae.inference.dequantize` makes a bound
    on a mass). None for a model without a pyro-vae likelihood."""
    data_kind = getattr(getattr(model, "likelihood", None), "data_kind", None)
    if data_kind is None:
        return None
    binary = data_kind == "binary" or bool(((x == 0) | (x == 1)).all())
    return number_kind(data_kind, binary)


def quantity_of_scores(model, inputs: dict) -> str:
    """What the estimate is of: the conditional VAE's log p(x | y) (its label is an input, not
    a variable of the model), quadrant completion's log p(x_m | x_g), log p(x, y) for a model
    whose label site is observed with the given labels (M2, the ADGM:
    :func:`~pyro_vae.inference.semisupervised.marginal_log_likelihood` sums y out), else log p(x)."""
    from pyro_vae.models.cvae import CVAEModel
    from pyro_vae.models.quadrant import QuadrantCVAEModel

    if isinstance(model, QuadrantCVAEModel):
        return COMPLETION
    if isinstance(model, CVAEModel):
        return GIVEN_LABEL
    given = [name for name, value in inputs.items() if torch.is_tensor(value)]
    return f"log p(x, {', '.join(given)})" if given else MARGINAL
