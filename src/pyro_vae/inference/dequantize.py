r"""A continuous density's score on 8-bit images as a lower bound on a probability mass.

An 8-bit image is a vector of levels k in {0..255}^D, loaded as x = k / 255. Give level k
the bin B_k of :mod:`pyro_vae.discrete` cut to [0, 1]: [(k - 1/2)/255, (k + 1/2)/255] for
0 < k < 255, and half-bins [0, 1/510] and [1 - 1/510, 1] for the edge levels. The bins
partition [0, 1], so any density p on (a superset of) [0, 1] defines a probability mass on
8-bit images, P(k) = \int_{B_k} p(y) dy (less than 1 in total where p has mass outside
[0, 1]: a lower bound, still). With y uniform on the image's bins (uniform dequantization),

.. math::

    \log P(k) = \log \mathbb{E}_{y \sim U(B_k)}[p(y)] + \log |B_k|
              \ge \mathbb{E}_{y \sim U(B_k)}[\log p(y)] + \sum_d \log |B_{k_d}|,

(Jensen) with log |B_k| = -log 255 per pixel, -log 510 at the edge levels. This is the
issue's E_u[log p((x + u)/256)] - D log 256 on the grid that the discretized likelihoods
use: the bins are centred on the values k/255 the continuous models were trained on (the
(x + u)/256 bins sit half a bin above them) and stay inside [0, 1], the continuous
Bernoulli's support. So a dequantized number and a discretized likelihood's number are
log-probabilities of the same discrete images, comparable in nats or bits per dimension.

log p(y) itself is estimated by the importance sampler (:mod:`pyro_vae.inference.loglik`),
one y per example drawn with a seeded generator; the per-example values carry both noises
and their standard error over examples covers both.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch

from pyro_vae import discrete
from pyro_vae.errors import DataError
from pyro_vae.inference.kinds import DENSITY, DEQUANTIZED_BOUND, number_kind
from pyro_vae.inference.loglik import LogLikelihoodEstimate

#: Added to the seed of the dequantization noise (any fixed number far from small seeds).
DEQUANTIZATION_STREAM = 0x9E3779B9


def dequantize(x: torch.Tensor, generator: torch.Generator,
               scored: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform draws y in each value's bin cut to [0, 1], ``[N, ...]``, and the log-volume of
    each example's bins sum_d log |B_{k_d}| ``[N]`` (nats). ``scored``, a bool mask of one
    example's shape, limits both to the pixel values the log-likelihood scores (quadrant
    completion's missing pixels): the others keep their values (they are conditioned on, not
    scored) and add no bin volume."""
    if discrete.off_grid(x).any():
        raise DataError("the images are not on the 256-level grid k/255, so they cannot be dequantized; "
                        "score 8-bit images as loaded (bytes / 255, --binarize none).")
    lower, upper = discrete.bin_edges(discrete.levels(x), x.dtype)
    lower, upper = lower.clamp(min=0.0), upper.clamp(max=1.0)
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)
    width = upper - lower
    y, log_width = lower + u * width, torch.log(width)
    if scored is not None:
        scored = scored.to(x.device)
        y, log_width = torch.where(scored, y, x), log_width * scored.to(x.dtype)
    return y, log_width.flatten(1).sum(1)


def dequantized_log_likelihood(estimate: Callable[[torch.Tensor], LogLikelihoodEstimate], x: torch.Tensor,
                               seed: int = 0, scored: torch.Tensor | None = None) -> LogLikelihoodEstimate:
    """E_u[log p(y)] + log |B| per example: ``estimate(y)`` (the importance sampler on the
    dequantized images y) plus each example's log bin volume, a lower bound on log P(x);
    ``scored`` as for :func:`dequantize` (a conditional log p(x_m | x_g) dequantizes x_m alone)."""
    # A stream of its own: seeded with ``seed`` itself, u would replay the uniforms behind the
    # sampler's z draws (or the data's, in a test), and the two noises would be correlated.
    y, log_volume = dequantize(x, torch.Generator().manual_seed(DEQUANTIZATION_STREAM + seed), scored)
    result = estimate(y)
    return replace(result, log_likelihood=result.log_likelihood + log_volume.to(result.log_likelihood),
                   kind=DEQUANTIZED_BOUND if result.kind == DENSITY else result.kind)


def score_log_likelihood(estimate: Callable[[torch.Tensor], LogLikelihoodEstimate], x: torch.Tensor,
                         data_kind: str, binary_data: bool, dequantized: bool = True,
                         seed: int = 0, scored: torch.Tensor | None = None) -> tuple[LogLikelihoodEstimate, str]:
    """log p(x) per example and its kind (:mod:`pyro_vae.inference.kinds`): a continuous
    likelihood (``data_kind`` "unit-interval") on 8-bit images is scored on dequantized images
    unless ``dequantized`` is False (then it is a density); the others as they are. ``scored``:
    the pixel values the estimate scores where not all (:func:`dequantize`)."""
    dequantize_now = dequantized and data_kind == "unit-interval" and not binary_data
    result = dequantized_log_likelihood(estimate, x, seed, scored) if dequantize_now else estimate(x)
    return result, number_kind(data_kind, binary_data, dequantize_now)
