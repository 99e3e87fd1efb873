"""Trace_ELBO vs TraceMeanField_ELBO, closed-form vs Monte Carlo KL, and the KL weight."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.inference.objectives import elbo_terms, linear_warmup, make_objective, scale_sites


@pytest.fixture
def vae():
    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=4, hidden_dims=[16]), (1, 4, 4))
    x = torch.bernoulli(torch.rand(3, 1, 4, 4))
    return model, guide, x


def test_trace_and_mean_field_elbo_agree_in_expectation(vae):
    model, guide, x = vae
    n = 20000
    mc = Trace_ELBO(num_particles=n, vectorize_particles=True, max_plate_nesting=1)
    analytic = TraceMeanField_ELBO(num_particles=n, vectorize_particles=True, max_plate_nesting=1)
    with torch.no_grad():
        loss_mc, loss_an = mc.loss(model, guide, x), analytic.loss(model, guide, x)
        # The Monte Carlo KL's spread sets the tolerance: sd of one draw / sqrt(n).
        draws = elbo_terms(model, guide, x.repeat(300, 1, 1, 1)).kl.view(300, len(x)).sum(-1)
    assert abs(loss_mc - loss_an) < 4 * draws.std().item() / math.sqrt(n) + 1e-3


def test_closed_form_kl_matches_monte_carlo(vae):
    model, guide, x = vae
    with torch.no_grad():
        analytic = elbo_terms(model, guide, x, analytic_kl=True).kl
        # 20,000 independent draws per image in one call: the images repeated along the data
        # plate, so each row's KL is log q(z|x) - log p(z) at its own draw of z ~ q(z|x).
        n = 20000
        draws = elbo_terms(model, guide, x.repeat(n, 1, 1, 1), analytic_kl=False).kl.view(n, len(x))
    se = draws.std(0) / math.sqrt(len(draws))
    assert (analytic - draws.mean(0)).abs().le(4 * se).all()
    # And the closed form is the Gaussian formula: 0.5 * sum(s^2 + m^2 - 1 - log s^2).
    loc, scale = guide.encode(x)
    by_hand = 0.5 * (scale ** 2 + loc ** 2 - 1 - torch.log(scale ** 2)).sum(-1)
    assert torch.allclose(analytic, by_hand, atol=1e-5)


def test_elbo_terms_match_pyro_loss(vae):
    model, guide, x = vae
    pyro.set_rng_seed(3)
    pyro_loss = Trace_ELBO().loss(model, guide, x)
    pyro.set_rng_seed(3)
    ours = elbo_terms(model, guide, x).elbo.sum().item()
    assert ours == pytest.approx(-pyro_loss, rel=1e-5)


def test_kl_weight_scales_only_the_latent_terms(vae):
    model, guide, x = vae
    beta = 0.25
    pyro.set_rng_seed(1)
    full = elbo_terms(model, guide, x, analytic_kl=True)
    pyro.set_rng_seed(1)
    loss_beta = TraceMeanField_ELBO().loss(scale_sites(model, ["z"], beta), scale_sites(guide, ["z"], beta), x)
    assert loss_beta == pytest.approx(-(full.reconstruction.sum() - beta * full.kl.sum()).item(), rel=1e-5)
    trace = poutine.trace(scale_sites(model, ["z"], beta)).get_trace(x)
    assert trace.nodes["z"]["scale"] == beta and trace.nodes["x"]["scale"] == 1.0


def test_linear_warmup_schedule():
    assert [linear_warmup(s, 4, 1.0) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert linear_warmup(0, 0, 0.5) == 0.5


def test_num_particles_and_iwae_objectives_build_and_bound(vae):
    model, guide, x = vae
    with torch.no_grad():
        elbo = torch.tensor([make_objective("elbo", num_particles=4).loss(model, guide, x) for _ in range(300)])
        iwae = torch.tensor([make_objective("iwae", k=20).loss(model, guide, x) for _ in range(300)])
    # The IWAE loss (minus a tighter bound) is smaller than minus the ELBO on average.
    assert iwae.mean() < elbo.mean() - 3 * math.hypot(iwae.std(), elbo.std()) / math.sqrt(300)


def test_an_unknown_elbo_implementation_is_refused():
    """implementation='fastt' silently returned Pyro's Trace_ELBO."""
    import pytest

    from pyro_vae.inference.objectives import make_objective

    with pytest.raises(ValueError, match="unknown implementation 'fastt'; choose 'fast' or 'pyro'"):
        make_objective("elbo", implementation="fastt")


def test_an_option_the_objective_does_not_read_is_refused():
    """k with an ELBO (and num_particles with an IWAE bound) changed nothing: make_objective('elbo', k=50)
    returned the one-draw ELBO, and make_objective('iwae', num_particles=8) the K=5 bound."""
    import pytest

    from pyro_vae.inference.objectives import make_objective

    for name in ("elbo", "analytic-kl"):
        with pytest.raises(ValueError, match=f"k has no effect on the {name} objective"):
            make_objective(name, k=50)
        assert make_objective(name, num_particles=3).num_particles == 3
    for name in ("iwae", "iwae-dreg"):
        with pytest.raises(ValueError, match=f"num_particles has no effect on the {name} objective"):
            make_objective(name, num_particles=8)
        assert make_objective(name, num_particles=1, k=7).k == 7 and make_objective(name).k == 5


@pytest.mark.parametrize("name,option,value", [("iwae", "k", 0), ("iwae-dreg", "k", -1), ("iwae", "k", 2.5),
                                               ("elbo", "num_particles", 0), ("analytic-kl", "num_particles", -2)])
def test_a_count_of_draws_below_one_is_refused_when_the_objective_is_made(name, option, value):
    """make_objective('iwae', k=0) was accepted and its first loss raised ZeroDivisionError "size cannot be zero"
    (k=-1: "math domain error"; num_particles=-2: "integer multiplication overflow")."""
    with pytest.raises(ValueError, match=f"^{option} must be a whole number of at least 1, not {value}\\.$"):
        make_objective(name, **{option: value})


def test_an_unknown_objective_is_named_with_the_choices():
    """make_objective("foo") said only "unknown objective 'foo'" (fit's own message lists them)."""
    from pyro_vae.inference.objectives import make_objective

    with pytest.raises(ValueError, match="unknown objective 'foo'; choose elbo, analytic-kl, iwae or iwae-dreg."):
        make_objective("foo")
