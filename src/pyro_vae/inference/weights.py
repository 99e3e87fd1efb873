"""Importance weights of a guide's draws under a model, read from Pyro traces."""

from __future__ import annotations

from typing import Callable

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

#: The data plate is the only plate in the package's VAE programs.
MAX_PLATE_NESTING = 1


def sample_sites(trace) -> dict[str, dict]:
    """The trace's sample sites, without the plates' subsample sites."""
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site)}


def log_importance_weights(model: Callable, guide: Callable, *args, k: int,
                           max_plate_nesting: int = MAX_PLATE_NESTING, grad: bool = False,
                           scaled: bool = False, **kwargs) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x) for K draws from the guide: ``[K, B]`` in nats.

    ``B`` is the size of the model's outermost (data) plate; the K draws are vectorized
    by a plate left of it. Site scales (such as a KL weight) are ignored: this is the
    unweighted joint density, unless ``scaled``: then each site's log-density is multiplied
    by its scale, as Pyro's ELBOs do, so that a KL weight beta on z gives the beta-IWAE
    weights log p(x | z) + beta (log p(z) - log q(z | x)) (the beta-ELBO at K = 1).
    With ``grad=False`` no autograd graph is built.
    """
    with torch.set_grad_enabled(grad):  # the log-densities too: a prior's or flow's parameters enter there
        with pyro.plate("importance_samples", k, dim=-(max_plate_nesting + 1)):
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        log_weight = 0.0
        for site in sample_sites(model_trace).values():
            log_weight = log_weight + per_example_log_prob(site, max_plate_nesting) * (site["scale"] if scaled else 1.0)
        for site in sample_sites(guide_trace).values():
            if not site["is_observed"]:
                log_weight = log_weight - per_example_log_prob(site, max_plate_nesting) * (site["scale"] if scaled else 1.0)
    return log_weight


def per_example_log_prob(site: dict, max_plate_nesting: int) -> torch.Tensor:
    """A site's log-density with all plates but the sample and data plates summed out."""
    log_prob = site["fn"].log_prob(site["value"])
    while log_prob.dim() < 2:  # a site outside the data plate counts for every example
        log_prob = log_prob.unsqueeze(-1)
    # Plates nested inside the data plate (dims 2 .. n) are summed out.
    if log_prob.dim() > 2:
        log_prob = log_prob.sum(tuple(range(2, log_prob.dim())))
    return log_prob
