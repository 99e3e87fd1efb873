"""Training objectives and the per-example ELBO decomposition.

Every objective has ``differentiable_loss(model, guide, *args)`` (a scalar: minus the
bound summed over the batch, in nats):

* ``elbo``: the ELBO with KL(q||p) estimated by Monte Carlo, as :class:`pyro.infer.Trace_ELBO`;
* ``analytic-kl``: KL(q||p) in closed form, as :class:`pyro.infer.TraceMeanField_ELBO`, at the
  sites where that is unbiased (:func:`closed_form_kl_sites`; Monte Carlo at the others);
* ``iwae``: :class:`IWAELoss`, the importance-weighted bound
  log (1/K) sum_k p(x, z_k) / q(z_k | x) per example (Burda et al. 2016); it equals
  :class:`pyro.infer.RenyiELBO` with alpha = 0, which has no ``differentiable_loss``;
* ``iwae-dreg``: :class:`DReGIWAELoss`, the same bound with the doubly reparameterized
  gradient of Tucker et al. (2019) for the guide's parameters.

For the two ELBOs, :class:`ReparamELBO` (the default, ``implementation="fast"``) computes
the same loss and gradients as Pyro's classes for reparameterized guides with less
overhead; ``implementation="pyro"`` uses Pyro's classes themselves. Particles are
vectorized in a plate left of the data plate, so every network sees one extra leading
batch dimension rather than a Python loop.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger
from torch.distributions import kl_divergence

from pyro_vae.distributions import FullPlate
from pyro_vae.counts import is_whole_number
from pyro_vae.errors import ConfigError
from pyro_vae.inference.randomness import random_state_kept
from pyro_vae.inference.weights import (MAX_PLATE_NESTING, guide_and_model_sites, log_importance_weights,
                                        per_example_log_prob, sample_sites)



def make_objective(name: str, num_particles: int | None = None, k: int | None = None, implementation: str = "fast",
                   max_plate_nesting: int = MAX_PLATE_NESTING):
    """The objective called ``name`` (``elbo``, ``analytic-kl``, ``iwae`` or ``iwae-dreg``).

    ``num_particles`` (default 1) averages the two ELBOs over that many draws; ``k`` (default 5)
    is the IWAE bound's number of draws. Each is refused where it has no effect (``k`` with an
    ELBO, ``num_particles`` other than 1 with the IWAE bounds), as the CLI refuses ``--k``.
    ``implementation="fast"`` gives :class:`ReparamELBO` for the two ELBOs (same numbers as
    Pyro's classes for reparameterized guides, less overhead); ``"pyro"`` gives Pyro's own
    ``Trace_ELBO`` and ``TraceMeanField_ELBO``, which also handle non-reparameterized sites.
    """
    if implementation not in ("fast", "pyro"):  # another name silently meant Pyro's classes
        raise ValueError(f"unknown implementation {implementation!r}; choose 'fast' or 'pyro'.")
    if name in ("iwae", "iwae-dreg") and num_particles not in (None, 1):
        raise ValueError(f"num_particles has no effect on the {name} objective, whose K draws are its particles; "
                         "give k instead.")
    if name in ("elbo", "analytic-kl") and k is not None:
        raise ValueError(f"k has no effect on the {name} objective; give num_particles to average it over "
                         "several draws, or use 'iwae' for the importance-weighted bound with K draws.")
    num_particles, k = 1 if num_particles is None else num_particles, 5 if k is None else k
    for option, count in (("num_particles", num_particles), ("k", k)):  # 0 failed in the first loss as
        if not is_whole_number(count) or count < 1:  # "size cannot be zero"
            raise ValueError(f"{option} must be a whole number of at least 1, not {count!r}.")
    num_particles, k = int(num_particles), int(k)  # NumPy integers as Python's
    if implementation == "fast" and name in ("elbo", "analytic-kl"):
        return ReparamELBO(num_particles, analytic_kl=name == "analytic-kl", max_plate_nesting=max_plate_nesting)
    if name == "elbo":
        return Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                          max_plate_nesting=max_plate_nesting)
    if name == "analytic-kl":
        return TraceMeanField_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                                   max_plate_nesting=max_plate_nesting)
    if name == "iwae":
        return IWAELoss(k=k, max_plate_nesting=max_plate_nesting)
    if name == "iwae-dreg":
        return DReGIWAELoss(k=k, max_plate_nesting=max_plate_nesting)
    from pyro_vae.config import OBJECTIVES

    raise ValueError(f"unknown objective {name!r}; choose {', '.join(OBJECTIVES[:-1])} or {OBJECTIVES[-1]}.")


class IWAELoss:
    r"""Minus the importance-weighted bound, summed over the batch (nats):

    .. math:: -\sum_b \log \frac{1}{K} \sum_{k=1}^K \frac{p(x_b, z_{bk})}{q(z_{bk} | x_b)},
              \quad z_{bk} \sim q(z | x_b),

    with reparameterized draws (the IWAE gradient of Burda et al.; where a gradient is taken, a guide
    latent that cannot be reparameterized is refused: its score-function term would be missing). K = 1
    is the ELBO.
    Site scales count, so a KL weight beta (``scale_sites``, also KL warm-up) weighs
    log p(z) - log q(z | x) in every log-weight: the beta-ELBO at K = 1.
    """

    def __init__(self, k: int = 5, max_plate_nesting: int = MAX_PLATE_NESTING):
        self.k = k
        self.max_plate_nesting = max_plate_nesting

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        log_w = log_importance_weights(model, guide, *args, k=self.k, grad=True, scaled=True,
                                       max_plate_nesting=self.max_plate_nesting,
                                       require_reparameterized=torch.is_grad_enabled(), **kwargs)
        return -(torch.logsumexp(log_w, 0) - math.log(self.k)).sum()

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()


class DReGIWAELoss(IWAELoss):
    r"""Minus the importance-weighted bound with the doubly reparameterized gradient
    (DReG, Tucker et al. 2019) for the guide's parameters phi.

    The value is :class:`IWAELoss`'s. With z_k = z(eps_k; phi), normalised weights
    :math:`\tilde w_k = w_k / \sum_j w_j` and :math:`\log w_k = \log p_\theta(x, z_k) - \log q_\phi(z_k | x)`:

    * the model's parameters theta get the IWAE gradient
      :math:`\sum_k \tilde w_k \nabla_\theta \log w_k`;
    * the guide's parameters phi get
      :math:`\sum_k \tilde w_k^2 \, \partial_{z} \log w_k \, \partial z_k / \partial \phi`,
      where log q is evaluated with phi held fixed: the score-function term
      -sum_k w~_k d log q(z_k) / d phi (whose expectation is not zero for K > 1) is replaced by
      its reparameterized form sum_k w~_k (1 - w~_k) d log w_k / dz dz_k / d phi (Tucker et
      al.'s identity), which turns the IWAE path term's w~_k into w~_k^2. This is unbiased
      for the IWAE gradient and its signal-to-noise ratio does not decay as K grows (Rainforth et al. 2018). Under a KL
      weight s on the latent sites (beta, KL warm-up) the weights are
      :math:`\tilde w_k ((1 - s) + s \tilde w_k)`, the same identity applied to the score
      term s * sum_k w~_k d log q / d phi; with s = 1 they are :math:`\tilde w_k^2`.

    Implemented as one pass: log q is read from the guide replayed on its own draws with
    its parameters detached (``torch.func.functional_call``, around the evaluation of log q
    too, which a flow's steps compute only then), and the model and that frozen
    guide read each latent z_k through an identity node whose gradient hook multiplies what
    reaches it by :math:`\tilde w_k` (the bound already gives it :math:`\tilde w_k`; under a KL
    weight s the hook's factor is (1 - s) + s w~_k).
    With several latents (a two-layer guide q(z1 | x) q(z2 | z1), z = (z1, z2)) the hooks
    sit on those copies, not on the draws: the gradient that reaches z1 through z2's own
    reparameterization z2(z1, eps2; phi) was scaled once at z2's copy and is not scaled
    again. The guide must be a ``torch.nn.Module`` whose latent sites are all
    reparameterized with leading dimensions ``[K, B]``, and its distributions must be able
    to evaluate log q at a value they did not draw themselves (a flow must be invertible:
    IAF and Householder are, planar is not).
    """

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        module = _find_module(guide)  # the guide itself, or inside a handler such as scale_sites
        if module is None:
            raise TypeError("iwae-dreg detaches the guide's parameters, so the guide must be a torch.nn.Module.")
        frozen = {f"guide.{name}": p.detach() for name, p in module.named_parameters()}

        with FullPlate("importance_samples", self.k, dim=-(self.max_plate_nesting + 1)):
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            latents = [site for site in sample_sites(guide_trace).values() if not site["is_observed"]]
            if not latents or not all(site["fn"].has_rsample for site in latents):
                raise ValueError("iwae-dreg needs a guide whose latent sites are all reparameterized; train this "
                                 "guide with Pyro's Trace_ELBO, or TraceEnum_ELBO to sum a discrete latent out.")
            # The model and the frozen guide read the draws through copies (identity nodes) that carry the hooks.
            copies = {site["name"]: site["value"].view_as(site["value"]) for site in latents}
            read = guide_trace.copy()
            for name, value in copies.items():
                read.nodes[name] = dict(read.nodes[name], value=value)
            model_trace = poutine.trace(poutine.replay(model, trace=read)).get_trace(*args, **kwargs)
            with warnings.catch_warnings():  # PyroModule notes that detached parameters skip the param store
                warnings.filterwarnings("ignore", message=".*not registered in the param store")
                log_q = torch.func.functional_call(_FrozenLogQ(module, read, self.max_plate_nesting), frozen,
                                                   args, kwargs)
        log_w = 0.0
        # Each site weighted by its scale, as IWAELoss does (a KL weight gives the beta-IWAE weights).
        for site in sample_sites(model_trace).values():
            log_w = log_w + per_example_log_prob(site, self.max_plate_nesting) * site["scale"]
        for name, term in log_q.items():  # the scale from the guide as called (a handler may have set it)
            log_w = log_w - term * guide_trace.nodes[name]["scale"]
        weights = torch.softmax(log_w.detach(), 0)  # [K, B]
        # Under a KL weight s on log q the score term that DReG replaces is s * sum_k w~_k d log q / d phi,
        # whose reparameterized form is s * w~_k (1 - w~_k) d log w_k / dz: the factor at z_k is
        # w~_k - s w~_k (1 - w~_k) = w~_k ((1 - s) + s w~_k), i.e. (1 - s) + s w~_k after the bound's own w~_k.
        scales = {_plain_scale(guide_trace.nodes[name]["scale"]) for name in copies}
        if len(scales) > 1:
            raise ValueError("iwae-dreg needs one KL weight on all of the guide's latent sites, not "
                             f"{sorted(scales)}; use --objective iwae.")
        scale = scales.pop()
        if scale != 1.0:
            weights = (1.0 - scale) + scale * weights
        for name, z in copies.items():
            if not z.requires_grad:
                continue
            if tuple(z.shape[:2]) != tuple(weights.shape):
                raise ValueError(f"iwae-dreg needs the latent '{name}''s leading dimensions to be [K, B] = "
                                 f"{list(weights.shape)}, not {list(z.shape)}.")
            z.register_hook(lambda grad: grad * weights.reshape(weights.shape + (1,) * (grad.dim() - 2)))
        return -(torch.logsumexp(log_w, 0) - math.log(self.k)).sum()


class _FrozenLogQ(torch.nn.Module):
    """The guide replayed on the draws' copies (``read``) and its log q at them, per latent site
    ``{name: [K, B]}``, as one call, so that ``torch.func.functional_call`` holds the detached
    parameters for all of it: a conditioned flow step (Pyro's IAF and Householder) runs its
    network when log q is evaluated, not when the guide samples, and read after the guide's
    call that network's live parameters, which put the score-function term back for them."""

    def __init__(self, guide: torch.nn.Module, read, max_plate_nesting: int):
        super().__init__()
        self.guide = guide
        self.read, self.max_plate_nesting = read, max_plate_nesting

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        trace = poutine.trace(poutine.replay(self.guide, trace=self.read)).get_trace(*args, **kwargs)
        return {name: _log_q_at_copy(site, self.max_plate_nesting)
                for name, site in sample_sites(trace).items() if not site["is_observed"]}


def _plain_scale(scale) -> float:
    """A site's scale as a number (a handler may have made it a 0-d tensor); a scale per example
    (a user's ``poutine.scale`` by a tensor) is refused: DReG's weights take one KL weight."""
    if isinstance(scale, torch.Tensor) and scale.numel() != 1:
        raise ValueError(f"iwae-dreg needs one KL weight on the guide's latent sites, not a tensor of shape "
                         f"{tuple(scale.shape)} (a scale per example); use --objective iwae.")
    return float(scale)


def _log_q_at_copy(site: dict, max_plate_nesting: int) -> torch.Tensor:
    """The frozen guide's log q at the draws' copies, which it did not draw itself: a flow
    that cannot be inverted (planar) finds no cached inverse and Pyro raises a KeyError."""
    try:
        return per_example_log_prob(site, max_plate_nesting)
    except KeyError:
        raise ConfigError(f"iwae-dreg evaluates log q at a given '{site['name']}', which needs an invertible flow; "
                          "this guide's is not (planar): use flow 'iaf' or 'householder', or objective "
                          "'iwae'.") from None


def check_dreg_guide(model: Callable, guide: Callable, *args, **kwargs) -> None:
    """Raise the ConfigError of :class:`DReGIWAELoss` now, before training, where the guide
    cannot evaluate log q at a value it did not draw: one bound on the given examples (a
    couple suffice) without gradients, the RNGs left as they were."""
    with random_state_kept(), torch.no_grad():
        DReGIWAELoss(k=1).differentiable_loss(model, guide, *args, **kwargs)


def _find_module(fn, depth: int = 0):
    """The ``torch.nn.Module`` behind ``fn``: ``fn`` itself, or the program a Pyro handler
    (a ``functools.partial`` around it) wraps."""
    if isinstance(fn, torch.nn.Module):
        return fn
    if depth < 8:
        for inner in (getattr(fn, "func", None), *getattr(fn, "args", ())):
            if callable(inner):
                found = _find_module(inner, depth + 1)
                if found is not None:
                    return found
    return None


class ScaleSites(Messenger):
    """Multiply the log-density of the named sample sites by ``scale``.

    ``poutine.scale`` scales every site in its context; this scales only the named
    ones, so a KL weight beta can be put on the latent ``z`` in both model and guide
    (the ELBO's KL term is log q(z|x) - log p(z), both scaled) while the likelihood
    keeps weight 1. The models themselves stay unaware of it.
    """

    #: It acts on sample statements only (``pyro_vae.pyro_modules.IGNORES_STORED_PARAMS``).
    ignores_stored_params = True

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


def latent_sites(trace) -> list[str]:
    return [name for name, site in sample_sites(trace).items() if not site["is_observed"]]


def elbo_terms(model: Callable, guide: Callable, *args, analytic_kl: bool = False,
               require_reparameterized: bool = False, **kwargs) -> ELBOTerms:
    """One-sample ELBO per example, split into E_q[log p(x|z)] and KL(q(z|x) || p(z)).

    Traces the guide, replays the model on its draws, and reads each site's log-density
    with the data plate's dimension kept, weighted by the site's scale (so a KL weight set
    with :func:`scale_sites` applies, as in Pyro's ELBOs). With ``analytic_kl`` the KL of
    each latent site is computed in closed form where torch knows it (as in
    ``TraceMeanField_ELBO``), otherwise as log q(z|x) - log p(z) at the draw (as in
    ``Trace_ELBO``); either way its mean over examples is an unbiased estimate of the
    same ELBO. The closed form is used only where it is unbiased (:func:`closed_form_kl_sites`):
    at a site whose model distribution depends on no latent that the guide draws after it
    (in a two-layer VAE, KL(q(z1 | x) || p(z1 | z2)) at the guide's z2 would be biased, as z2
    was drawn from q(z2 | z1); z1's term stays Monte Carlo there). Extra plates to the left of the data plate (particles) are kept.
    With ``require_reparameterized`` a latent site that cannot be reparameterized (its
    gradient would need a score-function term) raises ``ValueError``.
    """
    guide_sites, model_sites = guide_and_model_sites(model, guide, *args, **kwargs)
    closed_form = closed_form_kl_sites(model_sites, guide_sites) if analytic_kl else frozenset()
    reconstruction = kl = None  # not 0.0: adding a tensor to 0.0 is one more op (and autograd node) a step
    for name, site in model_sites.items():
        if site["is_observed"]:
            reconstruction = _plus(reconstruction, _scaled(site["scale"], site["fn"].log_prob(site["value"])))
            continue
        q = guide_sites[name]
        if require_reparameterized and not q["fn"].has_rsample:
            raise ValueError(
                f"guide site '{name}' ({type(q['fn']).__name__}) is not reparameterized; the fast ELBO "
                "cannot differentiate it: use implementation='pyro' (--elbo-implementation pyro) or TraceEnum_ELBO."
            )
        if name in closed_form:
            try:
                kl = _plus(kl, _scaled(q["scale"], kl_divergence(q["fn"], site["fn"])))
                continue
            except NotImplementedError:
                pass
        kl = _plus(kl, _scaled(q["scale"], q["fn"].log_prob(q["value"]))
                   - _scaled(site["scale"], site["fn"].log_prob(site["value"])))
    return ELBOTerms(_tensor(reconstruction), _tensor(kl))


def _tensor(total: torch.Tensor | None) -> torch.Tensor:
    """``total`` (no sites: a zero); a tensor as it is (``torch.as_tensor`` of one is an op more)."""
    return total if isinstance(total, torch.Tensor) else torch.as_tensor(0.0 if total is None else total)


def _plus(total: torch.Tensor | None, term: torch.Tensor) -> torch.Tensor:
    """``total + term``, or ``term`` itself for the first term (``0.0 + term`` is exactly ``term``)."""
    return term if total is None else total + term


def closed_form_kl_sites(model_sites: dict, guide_sites: dict) -> frozenset[str]:
    r"""The latent sites whose KL term may be taken in closed form without bias.

    The ELBO's term of a latent s is E_q[log q(s | .) - log p(s | pa(s))]. Integrating s out
    in closed form at the draws of its model parents pa(s) is unbiased when those parents do
    not depend on s under the guide, i.e. when the guide drew them before s. The model's
    parents of s are not known from a trace, so this takes every latent that the model
    samples before s (a superset of pa(s)): s qualifies when each of them comes before s in
    the guide's order. Mean-field and same-order guides (the VAE, CVAE) qualify at every
    site; in the two-layer VAE (model z2, z1; guide z1, z2) only z2 does.

    ``model_sites`` and ``guide_sites``: sites in order of execution, as
    :func:`~pyro_vae.inference.weights.guide_and_model_sites` returns them."""
    guide_order = {name: i for i, (name, site) in enumerate(guide_sites.items()) if not site["is_observed"]}
    found, before = set(), []
    for name, site in model_sites.items():
        if site["is_observed"] or name not in guide_order:
            continue
        if all(guide_order.get(m, -1) < guide_order[name] for m in before):
            found.add(name)
        before.append(name)
    return frozenset(found)


def sites_without_closed_form_kl(model: Callable, guide: Callable, *args, **kwargs) -> list[str]:
    """The latent sites where ``analytic_kl`` would take the KL by Monte Carlo for want of a
    closed form (torch knows none for the pair, e.g. a mixture prior or a flow guide), among
    those where it would be unbiased (:func:`closed_form_kl_sites`); traced once, no gradients."""
    with torch.no_grad():
        guide_sites, model_sites = guide_and_model_sites(model, guide, *args, **kwargs)
    missing = []
    for name in sorted(closed_form_kl_sites(model_sites, guide_sites)):
        try:
            kl_divergence(guide_sites[name]["fn"], model_sites[name]["fn"])
        except NotImplementedError:
            missing.append(name)
    return missing


def _scaled(scale, log_prob: torch.Tensor) -> torch.Tensor:
    """``scale * log_prob``, without an extra elementwise op (and autograd node) when the
    scale is the plain 1.0 of an unscaled site."""
    return log_prob if isinstance(scale, float) and scale == 1.0 else scale * log_prob


class ReparamELBO:
    r"""The ELBO's fast path for fully reparameterized guides:

    .. math:: -\sum_b \Big( E_{q(z|x_b)}[\log p(x_b | z)] - \mathrm{KL}(q(z | x_b) \,\|\, p(z)) \Big),

    estimated with ``num_particles`` draws vectorized in a plate. It computes exactly what
    :class:`~pyro.infer.Trace_ELBO` (``analytic_kl=False``) or
    :class:`~pyro.infer.TraceMeanField_ELBO` (``analytic_kl=True``) compute for such a
    guide, with the same draws (tests check loss and gradients agree), but skips their
    score-function and validation bookkeeping, which for a VAE is pure overhead. One
    difference by design: where the guide draws a latent before the model's parents of it
    (the two-layer VAE's z1), ``analytic_kl`` keeps that site's term Monte Carlo, while
    ``TraceMeanField_ELBO`` takes it in closed form at the drawn parents, a biased bound.
    Use Pyro's classes (``--elbo-implementation pyro``) for guides with discrete sites.
    """

    def __init__(self, num_particles: int = 1, analytic_kl: bool = False,
                 max_plate_nesting: int = MAX_PLATE_NESTING):
        self.num_particles = num_particles
        self.analytic_kl = analytic_kl
        self.max_plate_nesting = max_plate_nesting

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        options = {"analytic_kl": self.analytic_kl, "require_reparameterized": True}
        if self.num_particles == 1:
            return -elbo_terms(model, guide, *args, **options, **kwargs).elbo.sum()
        # The same particle plate Pyro's ELBOs use when vectorize_particles=True.
        with FullPlate("num_particles_vectorized", self.num_particles, dim=-(self.max_plate_nesting + 1)):
            terms = elbo_terms(model, guide, *args, **options, **kwargs)
        return -terms.elbo.sum() / self.num_particles

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()
