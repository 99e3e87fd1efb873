"""IWAELoss and DReGIWAELoss against hand computations on a linear-Gaussian model.

Model: z ~ N(0, I_L), x ~ N(W z + b, sigma^2 I_D), with W, b learnable (the "decoder").
Guide: q(z | x) = N(A x + c, diag(exp(log_s))^2), with A, c, log_s learnable (the "encoder").
The guide draws z = m + s * eps with eps fixed by the test, so the hand formulas below use
exactly the objective's draws; they use torch.distributions, not Pyro.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
from pyro import poutine
import pytest
import torch
from torch import nn

from linear_gaussian import PPCA
from pyro_vae.inference.objectives import DReGIWAELoss, IWAELoss, make_objective, scale_sites

L, D, SIGMA = 2, 4, 0.7


class FixedNoiseNormal(dist.Normal):
    """N(loc, scale) whose reparameterized draw is loc + scale * eps for a given eps."""

    def __init__(self, loc, scale, eps):
        super().__init__(loc, scale)
        self.eps = eps

    def expand(self, batch_shape, _instance=None):
        assert tuple(batch_shape) == tuple(self.batch_shape), "the test gives loc the full shape"
        return self

    def rsample(self, sample_shape=torch.Size()):
        assert sample_shape == torch.Size()
        return self.loc + self.scale * self.eps


class LinearDecoderModel(nn.Module):
    def __init__(self, ppca: PPCA):
        super().__init__()
        self.W = nn.Parameter(ppca.W.clone())
        self.b = nn.Parameter(ppca.b.clone())

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], L), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, SIGMA).to_event(1), obs=x)


class LinearEncoderGuide(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = nn.Parameter(0.3 * torch.randn(L, D, generator=g, dtype=torch.float64))
        self.c = nn.Parameter(0.1 * torch.randn(L, generator=g, dtype=torch.float64))
        self.log_s = nn.Parameter(torch.full((L,), -0.5, dtype=torch.float64))
        self.eps = None  # [K, B, L] when fixed by the test

    def forward(self, x):
        m, s = x @ self.A.T + self.c, self.log_s.exp()
        with pyro.plate("data", x.shape[0]):
            if self.eps is None:
                pyro.sample("z", dist.Normal(m, s.expand_as(m)).to_event(1))
            else:
                shape = self.eps.shape
                pyro.sample("z", FixedNoiseNormal(m.expand(shape), s.expand(shape), self.eps).to_event(1))


@pytest.fixture
def setup():
    ppca = PPCA(latent_dim=L, data_dim=D, sigma=SIGMA, seed=3)
    x = ppca.sample(3, seed=4)
    model, guide = LinearDecoderModel(ppca), LinearEncoderGuide()
    guide.eps = torch.randn(7, 3, L, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return model, guide, x


def hand_log_weights(model, guide, x):
    """log p(x, z_k) - log q(z_k | x) ``[K, B]`` by the formulas, and the draws z ``[K, B, L]``."""
    m, s = x @ guide.A.T + guide.c, guide.log_s.exp()
    z = m + s * guide.eps
    normal = torch.distributions.Normal
    log_joint = normal(0.0, 1.0).log_prob(z).sum(-1) + normal(z @ model.W.T + model.b, SIGMA).log_prob(x).sum(-1)
    return log_joint - normal(m, s).log_prob(z).sum(-1), z, m, s


def grads(loss, params):
    return torch.autograd.grad(loss, params)


def test_iwae_loss_equals_the_hand_bound_and_its_gradients(setup):
    model, guide, x = setup
    loss = IWAELoss(k=7).differentiable_loss(model, guide, x)
    log_w, *_ = hand_log_weights(model, guide, x)
    hand = -(torch.logsumexp(log_w, 0) - math.log(7)).sum()
    assert loss.item() == pytest.approx(hand.item(), rel=1e-12)
    params = [model.W, model.b, guide.A, guide.c, guide.log_s]
    for ours, theirs in zip(grads(loss, params), grads(hand, params)):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_iwae_bound_is_exact_log_marginal_with_the_true_posterior_and_tightens_with_k():
    ppca = PPCA(latent_dim=L, data_dim=D, sigma=SIGMA, seed=3)
    x = ppca.sample(5, seed=4)
    exact = ppca.log_marginal(x).sum().item()
    # With q = p(z | x) every weight is p(x): the bound is log p(x) for any K.
    for k in (1, 3):
        assert -IWAELoss(k=k).loss(ppca.model, ppca.exact_guide, x) == pytest.approx(exact, rel=1e-10)
    # With a poor guide the bound is below log p(x) and rises towards it as K grows.
    draws = {k: torch.tensor([-IWAELoss(k=k).loss(ppca.model, ppca.poor_guide, x) for _ in range(100)])
             for k in (1, 5, 100)}
    means = [draws[k].mean().item() for k in (1, 5, 100)]
    se = draws[100].std().item() / 10
    assert means[0] < means[1] < means[2] < exact + 4 * se
    assert exact - means[2] < 0.05 * (exact - means[0])


def test_dreg_value_and_decoder_gradient_equal_iwae(setup):
    model, guide, x = setup
    iwae = IWAELoss(k=7).differentiable_loss(model, guide, x)
    dreg = make_objective("iwae-dreg", k=7).differentiable_loss(model, guide, x)
    assert dreg.item() == pytest.approx(iwae.item(), rel=1e-12)
    for ours, theirs in zip(grads(dreg, [model.W, model.b]), grads(iwae, [model.W, model.b])):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_dreg_encoder_gradient_is_the_dreg_formula(setup):
    model, guide, x = setup
    dreg = DReGIWAELoss(k=7).differentiable_loss(model, guide, x)
    got = grads(dreg, [guide.A, guide.c, guide.log_s])
    with torch.no_grad():
        log_w, z, m, s = hand_log_weights(model, guide, x)
        w2 = torch.softmax(log_w, 0) ** 2  # [K, B]
        W, b = model.W, model.b
        # d/dz [log p(x, z) - log q(z)] with q's parameters held fixed.
        g_z = -z + ((x - z @ W.T - b) / SIGMA ** 2) @ W + (z - m) / s ** 2  # [K, B, L]
        weighted = w2.unsqueeze(-1) * g_z
        # dz/dc = I, dz/dA = x (outer), dz/dlog_s = s * eps; the loss is minus the bound.
        expected = (-torch.einsum("kbl,bd->ld", weighted, x), -weighted.sum((0, 1)),
                    -(weighted * s * guide.eps).sum((0, 1)))
    for ours, theirs in zip(got, expected):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_dreg_encoder_gradient_is_unbiased_for_iwae_with_lower_variance():
    """Over many draws the DReG and IWAE encoder gradients have the same mean (within 4
    standard errors) and DReG's spread is smaller (Tucker et al. 2019)."""
    ppca = PPCA(latent_dim=L, data_dim=D, sigma=SIGMA, seed=3)
    x = ppca.sample(1, seed=4)
    model, guide = LinearDecoderModel(ppca), LinearEncoderGuide()
    draws = encoder_gradient_draws(model, guide, guide, x, k=20, repeats=250)
    assert draws["dreg"].var(0).sum() < 0.5 * draws["iwae"].var(0).sum()


def encoder_gradient_draws(model, guide, called_guide, x, k: int, repeats: int) -> dict[str, torch.Tensor]:
    """IWAE's and DReG's gradients of the linear guide's parameters over ``repeats`` calls
    (``called_guide``: the guide as the objectives call it, e.g. inside scale_sites), each
    ``[repeats, P]``; asserts that their means agree within 4 standard errors."""
    params = [guide.A, guide.c, guide.log_s]
    draws = {}
    for name, objective in (("iwae", IWAELoss(k=k)), ("dreg", DReGIWAELoss(k=k))):
        pyro.set_rng_seed(11)
        draws[name] = torch.stack([torch.cat([g.flatten() for g in grads(objective.differentiable_loss(
            model, called_guide, x), params)]) for _ in range(repeats)])
    mean_i, mean_d = draws["iwae"].mean(0), draws["dreg"].mean(0)
    se = torch.sqrt((draws["iwae"].var(0) + draws["dreg"].var(0)) / repeats)
    assert ((mean_i - mean_d).abs() <= 4 * se + 1e-9).all()
    return draws


def test_iwae_refuses_to_train_a_guide_with_a_latent_it_cannot_reparameterize():
    """IWAELoss took a guide with a Bernoulli latent and differentiated the bound at its draws as if
    they did not depend on the guide: the gradient lacked the score-function term (at K = 1 the
    guide's expected gradient was 0), a biased training step with no word. It now refuses the
    guide, as the fast ELBO and DReG do; the estimator, which takes no gradient, still scores it."""
    from pyro_vae.inference.loglik import importance_log_likelihood

    encoder = nn.Linear(3, 1)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(torch.full((x.shape[0], 1), 0.5)).to_event(1))
            pyro.sample("x", dist.Normal(2.0 * z, 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(logits=encoder(x)).to_event(1))

    x = torch.randn(4, 3)
    for k in (1, 5):
        with pytest.raises(ValueError, match="guide site 'z' .* is not reparameterized, so the IWAE bound's gradient "
                                             "would lack its score-function term"):
            IWAELoss(k=k).differentiable_loss(model, guide, x)
    with torch.no_grad():  # the bound's value alone takes no gradient: scored
        assert math.isfinite(IWAELoss(k=5).loss(model, guide, x))
    assert torch.isfinite(importance_log_likelihood(model, guide, x, k=50).log_likelihood).all()


def test_dreg_refuses_a_guide_with_a_latent_it_cannot_reparameterize():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("a", dist.Normal(0.0, 1.0))
            pyro.sample("b", dist.Bernoulli(0.5))

    class Guide(nn.Module):
        def forward(self, x):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("a", dist.Normal(0.0, 1.0))
                pyro.sample("b", dist.Bernoulli(0.5))

    with pytest.raises(ValueError, match="latent sites are all reparameterized"):
        DReGIWAELoss(k=2).differentiable_loss(model, Guide(), torch.zeros(3))


def test_dreg_under_a_kl_weight_equals_the_beta_iwae_value_and_decoder_gradient(setup):
    """The trainer wraps model and guide in scale_sites during KL warm-up; DReG finds the
    guide's module inside the handler and weighs log q by the same scale as IWAE."""
    model, guide, x = setup
    scaled_model, scaled_guide = scale_sites(model, ["z"], 0.3), scale_sites(guide, ["z"], 0.3)
    iwae = IWAELoss(k=7).differentiable_loss(scaled_model, scaled_guide, x)
    dreg = DReGIWAELoss(k=7).differentiable_loss(scaled_model, scaled_guide, x)
    assert dreg.item() == pytest.approx(iwae.item(), rel=1e-12)
    assert dreg.item() != pytest.approx(IWAELoss(k=7).loss(model, guide, x), rel=1e-3)
    for ours, theirs in zip(grads(dreg, [model.W, model.b]), grads(iwae, [model.W, model.b])):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_dreg_under_a_kl_weight_is_unbiased_for_the_beta_iwae_encoder_gradient():
    """Under a KL weight s the score term that DReG replaces is s times IWAE's, so the weights
    at the draws are w~ ((1 - s) + s w~), not w~^2 (which was biased by over 100 standard
    errors here for s = 0.3): the mean DReG encoder gradient equals the mean IWAE one."""
    ppca = PPCA(latent_dim=L, data_dim=D, sigma=SIGMA, seed=3)
    x = ppca.sample(1, seed=4).expand(100, D).contiguous()  # 100 copies of one example: 100 draws a call
    model, guide = LinearDecoderModel(ppca), LinearEncoderGuide()
    encoder_gradient_draws(scale_sites(model, ["z"], 0.3), guide, scale_sites(guide, ["z"], 0.3), x, k=10,
                           repeats=40)


def test_dreg_refuses_different_kl_weights_on_its_latents():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("a", dist.Normal(x.new_zeros(x.shape[0]), 1.0))
            pyro.sample("b", dist.Normal(x.new_zeros(x.shape[0]), 1.0))

    class Guide(nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("a", dist.Normal(self.loc.expand(x.shape[0]), 1.0))
                pyro.sample("b", dist.Normal(self.loc.expand(x.shape[0]), 1.0))

    with pytest.raises(ValueError, match="one KL weight"):
        DReGIWAELoss(k=2).differentiable_loss(scale_sites(model, ["a"], 0.5), scale_sites(Guide(), ["a"], 0.5),
                                              torch.zeros(3))
    # a scale per example (poutine.scale by a tensor) failed in float() with torch's conversion error
    per_example = torch.tensor([0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="one KL weight on the guide's latent sites, not a tensor of shape"):
        DReGIWAELoss(k=2).differentiable_loss(poutine.scale(model, scale=per_example),
                                              poutine.scale(Guide(), scale=per_example), torch.zeros(3))


@pytest.mark.filterwarnings("ignore:.*not registered in the param store")
@pytest.mark.parametrize("flow", ["iaf", "householder"])
def test_dreg_on_a_flow_guide_holds_the_steps_parameters_fixed_in_log_q(flow):
    """Pyro's conditioned IAF and Householder steps run their networks when log q is evaluated,
    after the guide's call: log q must be taken with the detached parameters too, else the
    steps' score-function term (which DReG replaces) is counted as well (10.5 off here). The
    reference: the DReG formula with log q from a frozen deep copy of the guide, same draws."""
    import copy

    from pyro import poutine

    from pyro_vae.build import build_vae
    from pyro_vae.config import ModelConfig
    from pyro_vae.distributions import FullPlate
    from pyro_vae.inference.weights import per_example_log_prob

    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8], flow=flow, flow_steps=2,
                                         likelihood="bernoulli"), (1, 2, 2))
    model, guide = model.double(), guide.double()
    with torch.no_grad():  # move IAF steps off their identity start
        for parameter in guide.steps.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x = torch.bernoulli(torch.full((3, 1, 2, 2), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    params = list(guide.parameters())
    pyro.set_rng_seed(3)
    got = grads(DReGIWAELoss(k=6).differentiable_loss(model, guide, x), params)
    frozen = copy.deepcopy(guide).requires_grad_(False)
    pyro.set_rng_seed(3)
    with FullPlate("importance_samples", 6, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
        frozen_trace = poutine.trace(poutine.replay(frozen, trace=guide_trace)).get_trace(x)
    log_w = (per_example_log_prob(model_trace.nodes["z"], 1) + per_example_log_prob(model_trace.nodes["x"], 1)
             - per_example_log_prob(frozen_trace.nodes["z"], 1))
    expected = grads(-(torch.softmax(log_w.detach(), 0) ** 2 * log_w).sum(), params)
    for ours, theirs in zip(got, expected):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)
