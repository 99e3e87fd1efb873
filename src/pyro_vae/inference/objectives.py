"""Training objectives and the per-example ELBO decomposition.

Training uses Pyro's own ELBOs through ``differentiable_loss`` (a scalar: minus the
bound summed over the batch, in nats):

* ``elbo``: :class:`pyro.infer.Trace_ELBO`, KL(q||p) estimated by Monte Carlo;
* ``analytic-kl``: :class:`pyro.infer.TraceMeanField_ELBO`, KL(q||p) in closed form;
* ``iwae``: :class:`IWAELoss`, the importance-weighted bound
  log (1/K) sum_k p(x, z_k) / q(z_k | x) per example (Burda et al. 2016); it equals
  :class:`pyro.infer.RenyiELBO` with alpha = 0, which has no ``differentiable_loss``.

Particles are vectorized in a plate left of the data plate, so every network sees one
extra leading batch dimension rather than a Python loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from pyro import poutine
from pyro.infer import ELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

from pyro_vae.inference.weights import MAX_PLATE_NESTING, log_importance_weights



def make_objective(name: str, num_particles: int = 1, k: int = 5,
                   max_plate_nesting: int = MAX_PLATE_NESTING):
    """The Pyro ELBO called ``name`` (``elbo``, ``analytic-kl`` or ``iwae``)."""
    if name == "elbo":
        return Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                          max_plate_nesting=max_plate_nesting)
    if name == "analytic-kl":
        return TraceMeanField_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                                   max_plate_nesting=max_plate_nesting)
    if name == "iwae":
        return IWAELoss(k=k, max_plate_nesting=max_plate_nesting)
    raise ValueError(f"unknown objective {name!r}")


class IWAELoss:
    r"""Minus the importance-weighted bound, summed over the batch (nats):

    .. math:: -\sum_b \log \frac{1}{K} \sum_{k=1}^K \frac{p(x_b, z_{bk})}{q(z_{bk} | x_b)},
              \quad z_{bk} \sim q(z | x_b),

    with reparameterized draws (the IWAE gradient of Burda et al.). K = 1 is the ELBO.
    """

    def __init__(self, k: int = 5, max_plate_nesting: int = MAX_PLATE_NESTING):
        self.k = k
        self.max_plate_nesting = max_plate_nesting

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        log_w = log_importance_weights(model, guide, *args, k=self.k, grad=True,
                                       max_plate_nesting=self.max_plate_nesting, **kwargs)
        return -(torch.logsumexp(log_w, 0) - math.log(self.k)).sum()

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()


class ScaleSites(Messenger):
    """Multiply the log-density of the named sample sites by ``scale``.

    ``poutine.scale`` scales every site in its context; this scales only the named
    ones, so a KL weight beta can be put on the latent ``z`` in both model and guide
    (the ELBO's KL term is log q(z|x) - log p(z), both scaled) while the likelihood
    keeps weight 1. The models themselves stay unaware of it.
    """

    def __init__(self, sites: Iterable[str], scale: float):
        super().__init__()
        self.sites = frozenset(sites)
        self.scale = scale

    def _process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in self.sites:
            msg["scale"] = self.scale * msg["scale"]


def scale_sites(fn: Callable, sites: Iterable[str], scale: float) -> Callable:
    """``fn`` with the log-densities of ``sites`` multiplied by ``scale``."""
    return ScaleSites(sites, scale)(fn)


def linear_warmup(step: int, warmup_steps: int, beta: float = 1.0) -> float:
    """KL weight at ``step``: rises linearly from beta/warmup_steps to ``beta`` and stays."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, (step + 1) / warmup_steps)


@dataclass
class ELBOTerms:
    """Per-example parts of the ELBO, in nats: ``elbo = reconstruction - kl``, each ``[B]``."""

    reconstruction: torch.Tensor
    kl: torch.Tensor

    @property
    def elbo(self) -> torch.Tensor:
        return self.reconstruction - self.kl


def sample_sites(trace) -> dict[str, dict]:
    """The trace's sample sites, without the plates' subsample sites."""
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site)}


def latent_sites(trace) -> list[str]:
    return [name for name, site in sample_sites(trace).items() if not site["is_observed"]]


def elbo_terms(model: Callable, guide: Callable, *args, analytic_kl: bool = False,
               **kwargs) -> ELBOTerms:
    """One-sample ELBO per example, split into E_q[log p(x|z)] and KL(q(z|x) || p(z)).

    Traces the guide, replays the model on its draws, and reads each site's log-density
    with the data plate's dimension kept. With ``analytic_kl`` the KL of each latent site
    is computed in closed form where torch knows it (as in ``TraceMeanField_ELBO``),
    otherwise as log q(z|x) - log p(z) at the draw (as in ``Trace_ELBO``); either way
    its mean over examples is an unbiased estimate of the same ELBO.
    """
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    reconstruction = 0.0
    kl = 0.0
    for name, site in sample_sites(model_trace).items():
        if site["is_observed"]:
            reconstruction = reconstruction + site["fn"].log_prob(site["value"])
            continue
        q = guide_trace.nodes[name]
        if analytic_kl:
            try:
                kl = kl + kl_divergence(q["fn"], site["fn"])
                continue
            except NotImplementedError:
                pass
        kl = kl + q["fn"].log_prob(q["value"]) - site["fn"].log_prob(site["value"])
    return ELBOTerms(torch.as_tensor(reconstruction), torch.as_tensor(kl))
