"""Importance weights of a guide's draws under a model, read from Pyro traces."""

from __future__ import annotations

from typing import Callable

import torch
from pyro import poutine
from pyro.poutine.runtime import _PYRO_PARAM_STORE  # the store PyroModule itself syncs with
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from pyro_vae.distributions import FullPlate
from pyro_vae.errors import DataError

#: The data plate is the only plate in the package's VAE programs.
MAX_PLATE_NESTING = 1


def sample_sites(trace) -> dict[str, dict]:
    """The trace's sample sites, without the plates' subsample sites."""
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site)}


class SiteRecorder(Messenger):
    """A lean ``poutine.trace`` (+ ``poutine.replay``) for the inference hot paths.

    Records a program's sample sites in order of execution (``sites``: name -> the site's
    message, with ``fn``, ``value``, ``scale``, ``is_observed``, as
    ``sample_sites(poutine.trace(...).get_trace())`` gives them) and, given the sites of a
    guide's run (``replay``), gives the model's latent sites the guide's values, as
    ``poutine.replay`` does. It builds no ``Trace`` graph, copies no messages and records no
    parameter sites.

    A ``PyroModule`` issues a ``pyro.param`` statement at every read of an ``nn.Parameter``
    so that the param store knows it. When the store already holds that very tensor under
    that name the statement can change nothing (the module uses its own tensor either way),
    so it is answered here, without walking the rest of the handler stack; any other param
    statement (first registration, a ``PyroParam``, a name bound to another tensor) goes
    through Pyro as usual. So a handler *outside* this one sees no such parameter sites:
    use ``poutine.trace`` where they matter (Pyro's ``SVI`` collects its parameters so).
    """

    #: A parameter statement for a stored parameter is answered here and recorded nowhere, so
    #: a network may leave it out (``pyro_vae.pyro_modules.IGNORES_STORED_PARAMS``).
    ignores_stored_params = True

    def __init__(self, replay: dict | None = None):
        super().__init__()
        self.sites: dict[str, dict] = {}
        self.replay = replay

    def _process_message(self, msg):
        kind = msg["type"]
        if kind == "param":
            args = msg["args"]
            if len(args) > 1 and isinstance(args[1], torch.nn.Parameter) \
                    and _PYRO_PARAM_STORE._params.get(args[0]) is args[1]:
                msg["value"], msg["done"], msg["stop"] = args[1], True, True
        elif kind == "sample" and self.replay is not None and not msg["is_observed"]:
            guide_site = self.replay.get(msg["name"])
            if guide_site is not None:
                msg["value"], msg["done"], msg["infer"] = guide_site["value"], True, guide_site["infer"]

    def _postprocess_message(self, msg):
        if msg["type"] == "sample" and not site_is_subsample(msg) and not msg["infer"].get("_do_not_trace"):
            if msg["name"] in self.sites:
                raise RuntimeError(f"Multiple sample sites named '{msg['name']}'")
            self.sites[msg["name"]] = msg


def record_sites(fn: Callable, *args, replay: dict | None = None, **kwargs) -> dict[str, dict]:
    """Run ``fn(*args, **kwargs)`` under a :class:`SiteRecorder` and return its sample sites."""
    with SiteRecorder(replay) as recorder:
        fn(*args, **kwargs)
    return recorder.sites


def guide_and_model_sites(model: Callable, guide: Callable, *args, **kwargs) -> tuple[dict, dict]:
    """The guide's sample sites, and the model's with its latents replayed from the guide's."""
    guide_sites = record_sites(guide, *args, **kwargs)
    return guide_sites, record_sites(model, *args, replay=guide_sites, **kwargs)


def check_one_value_per_example(values: torch.Tensor, n: int) -> None:
    """Refuse per-example values (log-weights ``[..., B]``, ELBOs ``[B]``) of a batch of ``n``
    examples whose last dimension is not ``n``: a model and guide that sample outside a data
    plate (``.to_event`` over the batch, or another plate at dim -1) give one number for the
    whole batch, which the estimator reported as the log p(x) of one example ("nats per
    example" of a joint density of the batch) and fit's validation failed on with torch's
    "zero-dimensional tensor cannot be concatenated". A batch of one cannot tell: passed."""
    if n > 1 and (values.dim() == 0 or values.shape[-1] != n):
        raise DataError(f"the model and guide give {values.shape[-1] if values.dim() else 1} value(s) for a batch of "
                        f"{n} examples, not one per example: sample every site of an example inside "
                        "pyro.plate(\"data\", x.shape[0]), the outermost plate (dim -1), as in Pyro's VAE tutorial; "
                        "without it the numbers are of the whole batch, not nats per example.")


def log_importance_weights(model: Callable, guide: Callable, *args, k: int,
                           max_plate_nesting: int = MAX_PLATE_NESTING, grad: bool = False,
                           scaled: bool = False, require_reparameterized: bool = False, **kwargs) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x) for K draws from the guide: ``[K, B]`` in nats.

    ``B`` is the size of the model's outermost (data) plate; the K draws are vectorized
    by a plate left of it. Site scales (such as a KL weight) are ignored: this is the
    unweighted joint density, unless ``scaled``: then each site's log-density is multiplied
    by its scale, as Pyro's ELBOs do, so that a KL weight beta on z gives the beta-IWAE
    weights log p(x | z) + beta (log p(z) - log q(z | x)) (the beta-ELBO at K = 1).
    With ``grad=False`` no autograd graph is built. With ``require_reparameterized`` (a training
    objective's gradient) a guide latent that cannot be reparameterized raises ``ValueError``:
    its draws would be differentiated as if they did not depend on the guide.
    """
    with torch.set_grad_enabled(grad):  # the log-densities too: a prior's or flow's parameters enter there
        with FullPlate("importance_samples", k, dim=-(max_plate_nesting + 1)):
            guide_sites, model_sites = guide_and_model_sites(model, guide, *args, **kwargs)
        check_latents_match(model_sites, guide_sites)
        name = unreparameterized_latent(guide_sites) if require_reparameterized else None
        if name is not None:
            raise ValueError(f"guide site '{name}' ({type(guide_sites[name]['fn']).__name__}) is not reparameterized, "
                             "so the IWAE bound's gradient would lack its score-function term and train the guide on "
                             "a biased gradient; train this guide with Pyro's Trace_ELBO, or TraceEnum_ELBO to sum a "
                             "discrete latent out.")
        # Terms joined without a 0.0 to start from and without multiplying by a unit scale
        # (both exact, and each an op a call: the estimator's fixed cost per chunk, issue #16).
        log_weight = None
        for site in model_sites.values():
            term = _scaled_term(site, max_plate_nesting, scaled)
            log_weight = term if log_weight is None else log_weight + term
        for site in guide_sites.values():
            if not site["is_observed"]:
                term = _scaled_term(site, max_plate_nesting, scaled)
                log_weight = -term if log_weight is None else log_weight - term
    return log_weight


def unreparameterized_latent(sites: dict) -> str | None:
    """The name of the first latent site of ``sites`` whose distribution cannot be
    reparameterized (no ``rsample``: a Bernoulli or categorical code), or None."""
    return next((name for name, site in sites.items() if not site["is_observed"] and not site["fn"].has_rsample),
                None)


def check_latents_match(model_sites: dict, guide_sites: dict) -> None:
    """Refuse a guide whose latent sites are not the model's: a model latent the guide does not
    sample was drawn from the prior and weighed by its density (the weights then estimate
    nothing), and a guide latent the model lacks entered with log q and no log p; both gave a
    number, silently wrong (a misspelt site name, say)."""
    for name, site in model_sites.items():
        if not site["is_observed"] and name not in guide_sites:
            raise DataError(f"the model samples the latent '{name}' but the guide does not, so it would be drawn "
                            f"from the prior and the importance weights would estimate nothing; give the guide a "
                            f"sample site '{name}' (the sites of a model and its guide share their names).")
    for name, site in guide_sites.items():
        if not site["is_observed"] and name not in model_sites:
            raise DataError(f"the guide samples '{name}' but the model has no site of that name, so its log q would "
                            f"enter the importance weights without a log p; name the guide's site as the model's "
                            "latent it stands for.")


def _scaled_term(site: dict, max_plate_nesting: int, scaled: bool) -> torch.Tensor:
    """A site's per-example log-density, times its scale when ``scaled`` and the scale is not a plain 1."""
    term = per_example_log_prob(site, max_plate_nesting)
    scale = site["scale"]
    if not scaled or (isinstance(scale, float) and scale == 1.0):
        return term
    return term * scale


def per_example_log_prob(site: dict, max_plate_nesting: int) -> torch.Tensor:
    """A site's log-density ``[K, B]`` with all plates but the sample and data plates summed out:
    the sample plate at dim -(max_plate_nesting + 1), the data plate at dim -1 (the outermost
    plate of the model, as Pyro allocates it), plates nested inside it at dims -2 .. -max_plate_nesting.
    (The nested plates were taken to lie right of the data plate, so with max_plate_nesting=2 a
    model's ``[K, 1, B]`` had its data dimension summed out: one value for the batch.)"""
    log_prob = site["fn"].log_prob(site["value"])
    while log_prob.dim() < 2:  # a site outside the data plate counts for every example
        log_prob = log_prob.unsqueeze(-1)
    # Plates nested inside the data plate (dims 1 .. n - 2, between the sample and data dims) are summed out.
    if log_prob.dim() > 2:
        log_prob = log_prob.sum(tuple(range(1, log_prob.dim() - 1)))
    return log_prob
