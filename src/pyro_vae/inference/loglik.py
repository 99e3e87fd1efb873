r"""Held-out marginal likelihood log p(x) by importance sampling from the guide.

For each example, with z_1..z_K ~ q(z | x),

.. math::

    \log \hat p(x) = \operatorname{logsumexp}_k [\log p(x, z_k) - \log q(z_k | x)] - \log K,

a stochastic lower bound on log p(x) in expectation (the IWAE bound) that tightens as
K grows and equals the ELBO's estimator at K = 1. The weights come from Pyro traces of
the model replayed on the guide's draws, vectorized over K by a plate to the left of the
model's own plates, so any model/guide pair of the package gets the estimator for free.

Memory stays bounded by working in chunks of examples and of samples; chunks over K are
merged with ``logaddexp``, which is exact, so the chunk sizes do not change the result.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from pyro_vae.inference.weights import MAX_PLATE_NESTING, log_importance_weights


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
        else:
            self.lse = torch.logaddexp(self.lse, chunk)
            self.lse_sq = torch.logaddexp(self.lse_sq, chunk_sq)
        self.count += log_w.shape[0]

    @property
    def log_mean(self) -> torch.Tensor:
        return self.lse - math.log(self.count)

    @property
    def ess(self) -> torch.Tensor:
        return torch.exp(2 * self.lse - self.lse_sq)


@dataclass
class LogLikelihoodEstimate:
    """Per-example importance-sampling estimates: ``log_likelihood`` and ``ess`` ``[N]``."""

    log_likelihood: torch.Tensor
    ess: torch.Tensor
    k: int
    seconds: float = 0.0

    @property
    def mean(self) -> float:
        """Mean log p(x) over examples, nats per example."""
        return self.log_likelihood.mean().item()

    @property
    def stderr(self) -> float:
        """Standard error of ``mean`` over examples (0 for a single example)."""
        n = self.log_likelihood.numel()
        return (self.log_likelihood.std() / math.sqrt(n)).item() if n > 1 else 0.0

    def summary(self) -> dict:
        return {
            "log_likelihood_mean": self.mean,
            "log_likelihood_stderr": self.stderr,
            "unit": "nats per example",
            "k": self.k,
            "examples": self.log_likelihood.numel(),
            "ess_mean": self.ess.mean().item(),
            "ess_min": self.ess.min().item(),
            "seconds": self.seconds,
        }


def importance_log_likelihood(model: Callable, guide: Callable, x: torch.Tensor, *, k: int,
                              batch_size: int = 100, k_chunk: int | None = None,
                              max_plate_nesting: int = MAX_PLATE_NESTING,
                              progress: bool = False, **kwargs) -> LogLikelihoodEstimate:
    """Estimate log p(x) for every example of ``x`` ``[N, ...]`` with ``k`` guide samples.

    Examples go through in chunks of ``batch_size`` and samples in chunks of ``k_chunk``
    (by default sized so one chunk holds about 100,000 example-samples, which keeps the
    784-512-256 MLP and the conv model well under 2 GiB). Tensors in ``kwargs`` (labels,
    say) are chunked along their first dimension with ``x``; the model and guide are
    called as ``model(x_chunk, **kwargs_chunk)``.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    if k_chunk is None:
        k_chunk = max(1, min(k, 100_000 // max(1, min(batch_size, len(x)))))
    start_time = time.perf_counter()
    estimates, ess = [], []
    starts = range(0, len(x), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"log p(x), K={k}", unit="batch", leave=False)
    for start in starts:
        rows = slice(start, start + batch_size)
        chunk_kwargs = {key: value[rows] if torch.is_tensor(value) else value
                        for key, value in kwargs.items()}
        accumulator = LogMeanExp()
        for k_start in range(0, k, k_chunk):
            accumulator.update(log_importance_weights(
                model, guide, x[rows], k=min(k_chunk, k - k_start),
                max_plate_nesting=max_plate_nesting, **chunk_kwargs))
        estimates.append(accumulator.log_mean)
        ess.append(accumulator.ess)
    return LogLikelihoodEstimate(torch.cat(estimates).cpu(), torch.cat(ess).cpu(), k,
                                 time.perf_counter() - start_time)
