"""Priors (mixture of Gaussians, VampPrior) and flow guides against closed forms.

The exact values: a linear-Gaussian VAE, z ~ p(z), x ~ N(W z + b, sigma^2 I), has
p(x) = N(x; b, W W^T + sigma^2 I) under N(0, I) and, under a mixture of Gaussians,
p(x) = sum_k pi_k N(x; W mu_k + b, W S_k W^T + sigma^2 I), S_k = diag(sigma_k^2).
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn

from mixtures import random_mixture_and_draws
from pyro_vae import nn as vae_nn
from pyro_vae.build import build_vae
from pyro_vae.config import Config, ModelConfig
from pyro_vae.errors import ConfigError
from pyro_vae.guides import DiagonalNormalGuide
from pyro_vae.guides.flows import FlowGuide, make_flow_steps
from pyro_vae.inference.loglik import importance_log_likelihood
from pyro_vae.inference.objectives import elbo_terms, make_objective
from pyro_vae.likelihoods import make_likelihood
from pyro_vae.models import VAEModel
from pyro_vae.models.priors import DiagonalNormalMixture, MixtureOfGaussiansPrior, StandardNormalPrior

L, D, SIGMA = 2, 5, 0.5
SHAPE = (1, 1, D)


def linear_vae(prior, guide):
    torch.manual_seed(1)
    decoder = vae_nn.Decoder(nn.Linear(L, D), SHAPE)
    return VAEModel(decoder, make_likelihood("gaussian", SHAPE, SIGMA), L, prior), guide


def linear_parts(model):
    return model.decoder.body.weight.detach().double(), model.decoder.body.bias.detach().double()


def data(n=4, seed=2):
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


class ConstantEncoder(nn.Module):
    """(loc, scale) = (0, 1.5) for every image: a wide guide that covers the posterior."""

    def forward(self, x):
        lead = x.shape[:-3]
        return x.new_zeros(lead + (L,)), x.new_full(lead + (L,), 1.5)


def mixture_prior():
    prior = MixtureOfGaussiansPrior(L, components=3)
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.0, 1.0, -0.5]))
        prior.loc.copy_(torch.tensor([[-1.5, 0.0], [1.0, 1.0], [0.5, -1.0]]))
        prior.raw_scale.copy_(torch.tensor([[0.0, -1.0], [0.5, 0.2], [-0.5, 0.0]]))
    return prior


def test_mixture_prior_log_density_is_the_hand_mixture():
    prior = mixture_prior()
    z = torch.randn(7, L)
    pi = torch.softmax(prior.logits, 0)
    scale = nn.functional.softplus(prior.raw_scale) + 1e-4
    per_component = torch.distributions.Normal(prior.loc, scale).log_prob(z[:, None, :]).sum(-1)  # [7, 3]
    hand = torch.logsumexp(per_component + pi.log(), -1)
    torch.testing.assert_close(prior.distribution(z, 7).log_prob(z), hand)


def test_diagonal_normal_mixture_density_and_gradients_are_mixture_same_familys():
    # The matrix-product density against torch's MixtureSameFamily in float64, with scales down
    # to 0.005 (terms of order 1e5, where a float32 expansion would lose digits) and draws of
    # shape [S, B, L] against a batch shape [B].
    logits, loc, scale, z = random_mixture_and_draws(3, loc_spread=2, scales=(0.005, 2.0), noise=0.01)
    params = [t.clone().requires_grad_() for t in (logits, loc, scale, z)]
    ours = DiagonalNormalMixture(*params[:3], [4]).log_prob(params[3])
    wide = [t.detach().double().requires_grad_() for t in (logits, loc, scale, z)]
    reference = dist.MixtureSameFamily(dist.Categorical(logits=wide[0]),
                                       dist.Normal(wide[1], wide[2]).to_event(1)).expand([4]).log_prob(wide[3])
    assert ours.shape == (3, 4) and ours.dtype == torch.float32
    assert torch.allclose(ours.double(), reference, rtol=1e-6, atol=1e-3), (ours.double() - reference).abs().max()
    ours.sum().backward(), reference.sum().backward()
    for mine, theirs in zip(params, wide):
        assert torch.allclose(mine.grad.double(), theirs.grad, rtol=1e-4, atol=1e-2 * theirs.grad.abs().max().item())


def test_diagonal_normal_mixture_draws_have_the_mixture_moments():
    logits = torch.tensor([0.0, math.log(3.0)])  # weights 1/4, 3/4
    loc = torch.tensor([[-2.0, 1.0], [1.0, 0.0]])
    scale = torch.tensor([[0.5, 1.0], [1.0, 0.2]])
    torch.manual_seed(0)
    draws = DiagonalNormalMixture(logits, loc, scale, [2]).sample([20000])  # [20000, 2, 2]
    assert draws.shape == (20000, 2, 2)
    weights = torch.tensor([0.25, 0.75])[:, None]
    mean = (weights * loc).sum(0)
    variance = (weights * (scale ** 2 + loc ** 2)).sum(0) - mean ** 2
    flat = draws.reshape(-1, 2)
    stderr = (variance / flat.shape[0]).sqrt()
    assert ((flat.mean(0) - mean).abs() < 4 * stderr).all()
    assert ((flat.var(0) / variance - 1).abs() < 0.05).all()


def test_estimator_with_a_mixture_prior_matches_the_exact_log_likelihood():
    prior = mixture_prior()
    model, guide = linear_vae(prior, DiagonalNormalGuide(ConstantEncoder()))
    x = data()
    W, b = linear_parts(model)
    pi = torch.softmax(prior.logits.detach().double(), 0)
    S = (nn.functional.softplus(prior.raw_scale.detach().double()) + 1e-4) ** 2
    exact = torch.logsumexp(torch.stack([
        pi[k].log() + dist.MultivariateNormal(W @ prior.loc.detach().double()[k] + b,
                                              W @ torch.diag(S[k]) @ W.T + SIGMA ** 2 * torch.eye(D))
        .log_prob(x.double().flatten(1)) for k in range(3)]), 0)
    torch.manual_seed(0)
    estimate = importance_log_likelihood(model, guide, x, k=20000)
    assert estimate.ess.min() > 200  # the guide covers the posterior; the estimate is converged
    assert not estimate.log_likelihood.requires_grad  # no autograd graph through the prior's parameters
    torch.testing.assert_close(estimate.log_likelihood.double(), exact, atol=0.02, rtol=0)


def test_vamp_prior_with_one_pseudo_input_equal_to_a_data_point_is_its_posterior():
    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[16], prior="vamp", pseudo_inputs=1), (1, 4, 4))
    x = torch.bernoulli(torch.rand(1, 1, 4, 4))
    model.latent_prior.set_pseudo_inputs(x)
    loc, scale = guide.encode(x)
    z = loc + scale * torch.randn(5, 3)
    # p(z) = q(z | u_1) with u_1 = x: the VampPrior is that Gaussian exactly.
    torch.testing.assert_close(model.prior(x, 5).log_prob(z), dist.Normal(loc, scale).to_event(1).log_prob(z))
    # So KL(q(z | x) || p(z)) = 0 at every draw, and the ELBO of x is its reconstruction term.
    for _ in range(3):
        terms = elbo_terms(model, guide, x)
        assert terms.kl.abs().max().item() < 1e-5
    # The pseudo-input's parameters live in the model; the encoder's only in the guide.
    assert [name for name, _ in model.named_parameters() if "encoder" in name] == []
    assert model.latent_prior.raw_pseudo_inputs.shape == (1, 1, 4, 4)


def test_vamp_prior_is_the_uniform_mixture_of_the_posteriors_at_the_pseudo_inputs():
    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[16], prior="vamp", pseudo_inputs=4), (1, 4, 4))
    u = torch.rand(4, 1, 4, 4)
    model.latent_prior.set_pseudo_inputs(u)
    z = torch.randn(6, 3)
    loc, scale = guide.encode(u)
    hand = torch.logsumexp(torch.distributions.Normal(loc, scale).log_prob(z[:, None]).sum(-1), -1) - math.log(4)
    torch.testing.assert_close(model.prior(z, 6).log_prob(z), hand)
    # Training moves the pseudo-inputs (the prior's gradient reaches them).
    loss = make_objective("elbo").differentiable_loss(model, guide, torch.bernoulli(torch.rand(8, 1, 4, 4)))
    loss.backward()
    assert model.latent_prior.raw_pseudo_inputs.grad.abs().sum() > 0


@pytest.mark.parametrize("prior,parameter", [("mog", "latent_prior.loc"), ("vamp", "latent_prior.raw_pseudo_inputs")])
def test_a_learned_priors_start_follows_the_seed_as_the_networks_do(prior, parameter):
    """--seed seeds the initialisation: the mixture's means and the pseudo-inputs were drawn from a
    generator of their own, seeded 0 whatever --seed said, so every seed began with the same prior."""
    def start(seed):
        pyro.set_rng_seed(seed)  # as a training run does before it builds the model
        size = {"prior_components": 3} if prior == "mog" else {"pseudo_inputs": 3}  # the other is refused
        model, _ = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8], prior=prior, **size), (1, 4, 4))
        return dict(model.named_parameters())

    first, again, other = start(0), start(0), start(1)
    assert torch.equal(first[parameter], again[parameter])
    assert not torch.allclose(first[parameter], other[parameter])
    assert not torch.allclose(first["decoder.body.0.0.weight"], other["decoder.body.0.0.weight"])  # as this


def test_pseudo_inputs_started_at_binary_images_get_the_gradient_of_their_pixels():
    """--pseudo-init data sets u to training images, whose pixels are mostly exactly 0 or 1: the
    gradient that reaches the parameter there is d log p(z) / du itself (hardtanh gave 0)."""
    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[16], prior="vamp", pseudo_inputs=2), (1, 4, 4))
    u = torch.bernoulli(torch.full((2, 1, 4, 4), 0.5))
    model.latent_prior.set_pseudo_inputs(u)
    z = torch.randn(5, 3)
    model.prior(z, 5).log_prob(z).sum().backward()
    leaf = u.clone().requires_grad_()
    loc, scale = guide.encode(leaf)
    hand = torch.logsumexp(torch.distributions.Normal(loc, scale).log_prob(z[:, None]).sum(-1), -1) - math.log(2)
    (expected,) = torch.autograd.grad(hand.sum(), leaf)
    assert expected.abs().min() > 0  # every pixel matters to log p(z)
    torch.testing.assert_close(model.latent_prior.raw_pseudo_inputs.grad, expected)


@pytest.mark.parametrize("flow", ["iaf", "householder", "planar"])
def test_flow_guide_log_density_is_the_change_of_variables(flow):
    torch.manual_seed(0)
    _, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[16], flow=flow, flow_steps=2), (1, 4, 4))
    guide = guide.double()
    with torch.no_grad():  # move IAF steps off their identity start, so the Jacobian is not trivial
        for parameter in guide.steps.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    q = guide.distribution(x)
    z0 = q.base_dist.rsample()
    z = z0
    for t in q.transforms:  # the same transform objects, so a planar flow's inverse is cached
        z = t(z)
    h = guide.encoder.features(x)
    loc, scale = guide.encoder.heads(h)

    def forward(v):  # z0 [3] -> z [3], through fresh copies of the conditioned steps
        out = v[None]
        for step in guide.steps:
            out = step.condition(h)(out)
        return out[0]

    jacobian = torch.autograd.functional.jacobian(forward, z0[0].detach())
    log_det = torch.linalg.slogdet(jacobian).logabsdet
    hand = torch.distributions.Normal(loc, scale).log_prob(z0).sum(-1) - log_det
    torch.testing.assert_close(q.log_prob(z), hand, rtol=1e-9, atol=1e-9)
    if flow != "householder":  # a reflection preserves volume; the others must not here
        assert log_det.abs() > 1e-3


def test_a_fresh_iaf_guide_is_its_encoders_normal_and_its_steps_learn():
    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[16], flow="iaf", flow_steps=2), (1, 4, 4))
    x = torch.bernoulli(torch.full((5, 1, 4, 4), 0.5))
    q = guide.distribution(x)
    z0 = q.base_dist.rsample()
    z = z0
    for t in q.transforms:
        z = t(z)
    torch.testing.assert_close(z, z0, rtol=0, atol=0)  # each step maps z to z
    torch.testing.assert_close(q.log_prob(z), q.base_dist.log_prob(z0), rtol=0, atol=0)  # log-determinant 0
    # Gradients reach the steps' output layers at once, and one update leaves the identity.
    (-elbo_terms(model, guide, x).elbo.sum()).backward()
    outputs = [step.nn.layers[-1] for step in guide.steps]
    assert all(layer.weight.grad.abs().sum() > 0 for layer in outputs)
    torch.optim.Adam(guide.parameters(), lr=1e-2).step()
    with torch.no_grad():
        q = guide.distribution(x)
        z = q.base_dist.sample()
        assert (q.log_prob(q.transforms[1](q.transforms[0](z))) - q.base_dist.log_prob(z)).abs().max() > 1e-4


def test_estimator_on_a_flow_guide_matches_the_exact_log_likelihood():
    torch.manual_seed(3)
    encoder = vae_nn.Encoder(nn.Sequential(nn.Flatten(), nn.Linear(D, 8), nn.Tanh()), 8, L)
    with torch.no_grad():  # start the base wide, so the proposal covers the posterior
        encoder.raw_scale.bias.fill_(1.0)
    guide = FlowGuide(encoder, make_flow_steps("iaf", L, 8, 2))
    model, guide = linear_vae(StandardNormalPrior(L), guide)
    x = data()
    W, b = linear_parts(model)
    exact = dist.MultivariateNormal(b, W @ W.T + SIGMA ** 2 * torch.eye(D)).log_prob(x.double().flatten(1))
    torch.manual_seed(0)
    estimate = importance_log_likelihood(model, guide, x, k=20000)
    assert estimate.ess.min() > 100
    torch.testing.assert_close(estimate.log_likelihood.double(), exact, atol=0.03, rtol=0)
    # The trace holds the flow's log q: one draw's weight is log p(x, z) - log q(z | x) of that draw.
    trace = poutine.trace(guide).get_trace(x)
    site = trace.nodes["z"]
    assert isinstance(site["fn"], dist.TransformedDistribution)


def test_options_are_validated():
    def config(**options):
        c = Config()
        for key, value in options.items():
            c.set(key, value)
        return c

    with pytest.raises(ConfigError, match="'mog' prior does not have"):
        config(prior="mog", objective="analytic-kl").validate()
    with pytest.raises(ConfigError, match="'iaf' flow guide does not have"):
        config(flow="iaf", objective="analytic-kl").validate()
    with pytest.raises(ConfigError, match="planar flows are not"):
        config(flow="planar", objective="iwae-dreg").validate()
    with pytest.raises(ConfigError, match="for --model vae"):
        config(model="cvae", prior="vamp", objective="elbo").validate()
    with pytest.raises(ConfigError, match="unknown flow 'maf'"):
        config(flow="maf").validate()
    with pytest.raises(ConfigError, match="pseudo_inputs must be between"):
        config(pseudo_inputs=0, objective="elbo").validate()
    config(prior="vamp", flow="iaf", objective="iwae-dreg").validate()  # a valid combination


def test_the_vamp_prior_is_refused_with_batch_norm_which_would_count_its_pseudo_inputs_as_data():
    """The VampPrior's components are the encoder at the pseudo-inputs; with batch normalisation
    the encoder's running statistics (what evaluation normalises the data by) would be updated by
    the pseudo-inputs too: one ELBO step updates them twice, once for each batch."""
    options = dict(network="conv", conv_channels=[4, 8], hidden_dims=[16], batch_norm=True, latent_dim=2)
    model, guide = build_vae(ModelConfig(prior="mog", prior_components=3, **options), (1, 8, 8))
    norm = next(m for m in guide.encoder.modules() if isinstance(m, nn.BatchNorm2d))
    make_objective("elbo").differentiable_loss(model, guide, torch.bernoulli(torch.full((5, 1, 8, 8), 0.4)))
    assert norm.num_batches_tracked.item() == 1  # the data's batch alone
    with pytest.raises(ConfigError, match="drop --batch-norm or use --prior mog"):
        build_vae(ModelConfig(prior="vamp", pseudo_inputs=3, **options), (1, 8, 8))


def test_a_vamp_prior_iaf_run_trains_reopens_and_evaluates(idx_dir, tmp_path):
    """End to end through the run directory: train, reopen the best checkpoint, score it."""
    from test_train import small_config

    from pyro_vae.data.datasets import as_tensor
    from pyro_vae.runs import open_run, train_run

    config = small_config(idx_dir, **{"model.prior": "vamp", "model.pseudo_inputs": 5, "model.flow": "iaf",
                                      "model.flow_steps": 2, "train.objective": "iwae-dreg", "train.k": 3,
                                      "train.epochs": 2})
    said = []
    summary = train_run(config, tmp_path / "run", progress=False, log=said.append)
    # DReG on an IAF guide is correct but slow (each step inverted by L passes): the run says so, once
    assert sum("about 20x that of --objective iwae" in line for line in said) == 1
    run = open_run(tmp_path / "run", "best")
    assert isinstance(run.guide, FlowGuide) and run.model.latent_prior.pseudo_inputs.shape[0] == 5
    x = as_tensor(run.dataset().test.images[:20])
    torch.manual_seed(0)
    estimate = importance_log_likelihood(run.model, run.guide, x, k=50)
    with torch.no_grad():
        elbo = torch.stack([elbo_terms(run.model, run.guide, x).elbo.mean() for _ in range(20)]).mean().item()
    # The K=50 bound is above the ELBO in expectation (up to the noise of 20 images).
    assert estimate.mean > elbo - 1.0
    assert abs(summary["test_elbo"]) < 1e4 and (tmp_path / "run" / "samples.png").exists()


def test_prior_check_is_refused_for_a_flow_guide_whose_q_is_not_the_normal_of_encode(idx_dir, tmp_path, capsys):
    """prior-check drew its 'aggregate posterior' as N(loc, scale) from guide.encode and gave each
    dimension KL(N(loc_d, scale_d) || N(0, 1)); a flow guide's encode is (flowed base mean, base
    scale), which is not q(z | x): its log-density at q's own draws differs."""
    from test_train import small_config

    from pyro_vae.cli import main
    from pyro_vae.runs import open_run, train_run

    run_dir = tmp_path / "run"
    train_run(small_config(idx_dir, **{"model.flow": "planar", "model.flow_steps": 2, "train.epochs": 1}), run_dir,
              progress=False, log=lambda line: None)
    run = open_run(run_dir, "best")
    x = run.dataset().test.images[:8].float()
    with torch.no_grad():
        q = run.guide.distribution(x)
        z = q.sample()
        normal = dist.Normal(*run.guide.encode(x)).to_event(1)
        assert (q.log_prob(z) - normal.log_prob(z)).abs().max() > 0.01
    assert main(["plot", str(run_dir), "--kind", "prior-check", "-o", str(tmp_path / "check.png")]) == 2
    err = capsys.readouterr().err
    assert "--flow planar guide is not one" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "check.png").exists()


def test_figures_that_decode_standard_normal_codes_are_refused_for_a_learned_prior(idx_dir, tmp_path, capsys):
    """manifold (a grid of N(0, I) quantiles) and compare (z ~ N(0, I) as each run's samples)
    show what a VampPrior or mixture model does not generate; prior-check draws from its prior."""
    from test_train import small_config

    from pyro_vae.cli import main
    from pyro_vae.runs import train_run

    run = tmp_path / "run"
    train_run(small_config(idx_dir, **{"model.prior": "mog", "model.prior_components": 3, "model.latent_dim": 2,
                                       "train.epochs": 1}), run, progress=False, log=lambda line: None)
    for kind in ("manifold", "compare"):
        assert main(["plot", str(run), "--kind", kind, "-o", str(tmp_path / f"{kind}.png")]) == 2
        err = capsys.readouterr().err
        assert "--prior mog, whose codes are not drawn from N(0, I)" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / f"{kind}.png").exists()
    assert main(["plot", str(run), str(run), "--kind", "compare", "-o", str(tmp_path / "two.png")]) == 2
    assert "--prior mog" in capsys.readouterr().err and not (tmp_path / "two.png").exists()
    assert main(["plot", str(run), "--kind", "prior-check", "-o", str(tmp_path / "check.png")]) == 0


def test_a_float64_iaf_guide_evaluates_log_q_at_a_given_z_without_autograd():
    """Without autograd an IAF step's network is the context-projected one; Pyro's inverse feeds
    it float32 zeros whatever the guide's dtype, which its own network promotes: a float64
    guide's log q at a z it did not draw (iwae-dreg's check before training) failed on dtypes."""
    torch.manual_seed(0)
    _, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[16], flow="iaf", flow_steps=2), (1, 4, 4))
    guide = guide.double()
    with torch.no_grad():  # move the steps off their identity start
        for parameter in guide.steps.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    z = torch.randn(5, 2, 3, dtype=torch.float64)
    expected = guide.distribution(x).log_prob(z)  # with autograd: Pyro's network
    with torch.no_grad():
        got = guide.distribution(x).log_prob(z)
    torch.testing.assert_close(got, expected.detach(), rtol=1e-9, atol=1e-9)


def test_the_side_by_side_latent_figure_scores_a_learned_prior_run_by_draws_from_its_own_prior(idx_dir, tmp_path,
                                                                                             monkeypatch):
    """plot RUN_VAMP RUN_VAE --kind latent titled the --prior mog run with "log (1/K) sum_k
    p(x | z_k), z_k ~ N(0, I)", codes its decoder was never trained on: no estimate of its
    log p(x), shown beside the standard run's, which is one. It now draws z_k from the run's
    own prior and says so."""
    from test_train import small_config

    from pyro_vae import plots
    from pyro_vae.data.datasets import as_tensor
    from pyro_vae.inference.reconstruction import sampled_code_log_likelihood
    from pyro_vae.runs import GENERATION_DRAWS, GENERATION_IMAGES, figure_from_runs, open_run, train_run

    train_run(small_config(idx_dir, **{"model.prior": "mog", "model.prior_components": 3, "train.epochs": 1,
                                       "train.figures": False}), tmp_path / "mog", progress=False)
    run = open_run(tmp_path / "mog", "best")
    with torch.no_grad():  # a prior far from N(0, I): draws from it and from N(0, I) decode apart
        run.model.latent_prior.loc.add_(4.0)
    entries = []
    monkeypatch.setattr(plots, "plot_compare", lambda found, *args, **kwargs: entries.extend(found) or args[2])
    figure_from_runs([run], "latent", tmp_path / "latent.png", limit=50)
    title = entries[0][0]
    assert "z_k ~ p(z) (its --prior mog)" in title and "N(0, I)" not in title
    x = as_tensor(run.dataset().test.head(50).images)[:GENERATION_IMAGES]
    with torch.no_grad():
        own = sampled_code_log_likelihood(run.model, x, k=GENERATION_DRAWS, prior=run.model.latent_prior).mean()
        standard = sampled_code_log_likelihood(run.model, x, k=GENERATION_DRAWS).mean()
    assert abs(own - standard) > 0.5  # the two numbers differ, and the title holds the prior's own
    assert f"{own:.1f}" in title.replace("−", "-")
