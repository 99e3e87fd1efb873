"""The two-layer VAE (--model hvae) against closed forms.

A linear-Gaussian two-layer model, z2 ~ N(0, I), z1 ~ N(B z2 + c, diag t^2),
x ~ N(W z1 + b, sigma^2 I), has the exact marginal

    p(x) = N(x; W c + b, W (B B^T + diag t^2) W^T + sigma^2 I),

and, since x and z2 are independent given z1, the exact posterior factorizes bottom-up as the
guide does: p(z1, z2 | x) = p(z1 | x) p(z2 | z1). With one unit per layer both factors are
scalar Gaussians, which the diagonal guide represents exactly: every importance weight is
then p(x) itself.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn

from pyro_vae import nn as vae_nn
from pyro_vae.build import build_vae
from pyro_vae.config import Config, ModelConfig
from pyro_vae.errors import ConfigError
from pyro_vae.guides import TwoLayerGuide
from pyro_vae.inference.loglik import importance_log_likelihood
from pyro_vae.inference.objectives import (DReGIWAELoss, IWAELoss, ReparamELBO, closed_form_kl_sites, elbo_terms,
                                           make_objective)
from pyro_vae.inference.weights import guide_and_model_sites
from pyro_vae.likelihoods import make_likelihood
from pyro_vae.models import TwoLayerVAEModel

D, SIGMA = 3, 0.5  # 0.5: exact in the likelihood's float32 buffer
SHAPE = (1, 1, D)
F64 = torch.float64


class Affine(nn.Module):
    """h -> (h W^T + b, exp(log_s)) over the last ``event_dims`` dimensions of h (flattened):
    a linear Gaussian layer, standing in for the encoder or a LatentEncoder."""

    def __init__(self, weight, bias, scale, event_dims=1):
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(weight, dtype=F64).clone())
        self.bias = nn.Parameter(torch.as_tensor(bias, dtype=F64).clone())
        self.log_s = nn.Parameter(torch.as_tensor(scale, dtype=F64).log().clone())
        self.event_dims = event_dims

    def forward(self, h):
        h = h.flatten(-self.event_dims) if self.event_dims > 1 else h
        loc = h @ self.weight.T + self.bias
        return loc, self.log_s.exp().expand(loc.shape)


class LinearTwoLayer:
    """The model's numbers: B [L1, L2], c [L1], t [L1]; W [D, L1], b [D]."""

    def __init__(self, l1, l2, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.B = torch.randn(l1, l2, generator=g, dtype=F64)
        self.c = 0.5 * torch.randn(l1, generator=g, dtype=F64)
        self.t = 0.5 + torch.rand(l1, generator=g, dtype=F64)
        self.W = torch.randn(D, l1, generator=g, dtype=F64)
        self.b = torch.randn(D, generator=g, dtype=F64)
        self.l1, self.l2 = l1, l2

    def prior_cov_z1(self):
        return self.B @ self.B.T + torch.diag(self.t ** 2)

    def log_marginal(self, x):
        cov = self.W @ self.prior_cov_z1() @ self.W.T + SIGMA ** 2 * torch.eye(D, dtype=F64)
        return dist.MultivariateNormal(self.W @ self.c + self.b, covariance_matrix=cov).log_prob(x.flatten(1))

    def posterior_z1(self):
        """p(z1 | x) = N(A x + a, S): (A [L1, D], a [L1], S [L1, L1])."""
        prior_precision = torch.linalg.inv(self.prior_cov_z1())
        S = torch.linalg.inv(prior_precision + self.W.T @ self.W / SIGMA ** 2)
        A = S @ self.W.T / SIGMA ** 2
        return A, S @ (prior_precision @ self.c - self.W.T @ self.b / SIGMA ** 2), S

    def posterior_z2(self):
        """p(z2 | z1) = N(G z1 + g, R): (G [L2, L1], g [L2], R [L2, L2])."""
        T2 = torch.diag(self.t ** -2)
        R = torch.linalg.inv(torch.eye(self.l2, dtype=F64) + self.B.T @ T2 @ self.B)
        G = R @ self.B.T @ T2
        return G, -G @ self.c, R

    def pair(self, widen=1.0):
        """The library's model and guide with these linear networks; the guide is the exact
        posterior's means with the diagonals of its covariances (times ``widen``)."""
        decoder = vae_nn.Decoder(nn.Linear(self.l1, D).double(), SHAPE)
        with torch.no_grad():
            decoder.body.weight.copy_(self.W)
            decoder.body.bias.copy_(self.b)
        likelihood = make_likelihood("gaussian", SHAPE, SIGMA).double()
        model = TwoLayerVAEModel(Affine(self.B, self.c, self.t), decoder, likelihood, self.l1, self.l2)
        A, a, S = self.posterior_z1()
        G, g, R = self.posterior_z2()
        guide = TwoLayerGuide(Affine(A, a, widen * S.diagonal().sqrt(), event_dims=3),
                              Affine(G, g, widen * R.diagonal().sqrt()))
        return model, guide

    def sample(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        z2 = torch.randn(n, self.l2, generator=g, dtype=F64)
        z1 = z2 @ self.B.T + self.c + self.t * torch.randn(n, self.l1, generator=g, dtype=F64)
        x = z1 @ self.W.T + self.b + SIGMA * torch.randn(n, D, generator=g, dtype=F64)
        return x.reshape(n, *SHAPE)


def test_with_the_exact_posterior_every_bound_is_the_exact_log_likelihood():
    """One unit per layer: the guide is p(z1 | x) p(z2 | z1), so log w = log p(x) for every draw."""
    truth = LinearTwoLayer(1, 1, seed=3)
    model, guide = truth.pair()
    x = truth.sample(4)
    exact = truth.log_marginal(x)
    pyro.set_rng_seed(0)
    estimate = importance_log_likelihood(model, guide, x, k=3)
    torch.testing.assert_close(estimate.log_likelihood, exact, rtol=0, atol=1e-10)
    torch.testing.assert_close(elbo_terms(model, guide, x).elbo, exact, rtol=0, atol=1e-10)
    for name in ("iwae", "iwae-dreg"):
        loss = make_objective(name, k=4).differentiable_loss(model, guide, x)
        assert loss.item() == pytest.approx(-exact.sum().item(), abs=1e-9)
    # A wrong guide (too wide) is not exact: the test can tell.
    wide_model, wide_guide = truth.pair(widen=1.5)
    assert (elbo_terms(wide_model, wide_guide, x).elbo - exact).abs().max() > 1e-3


def test_estimator_converges_to_the_exact_log_likelihood_above_the_elbo():
    """Three and two units: the mean-field guide is not the posterior (z1's is correlated),
    so the K=20,000 estimate is within a few of its standard errors of log p(x), and the
    ELBO (Monte Carlo or analytic-kl) clearly below it."""
    truth = LinearTwoLayer(3, 2, seed=7)
    truth.W *= 0.5
    truth.B *= 0.6
    model, guide = truth.pair(widen=1.2)  # mean-field and a little wide: not exact, but covering
    x = truth.sample(4, seed=6)
    exact = truth.log_marginal(x)
    k = 20000
    pyro.set_rng_seed(0)
    estimate = importance_log_likelihood(model, guide, x, k=k)
    assert estimate.ess.min() > 0.2 * k
    # log of a mean of K weights: standard error sqrt((K / ESS - 1) / K) by the delta method
    stderr = torch.sqrt((k / estimate.ess - 1) / k)
    assert ((estimate.log_likelihood - exact).abs() < 4 * stderr).all()
    with torch.no_grad(), pyro.plate("draws", 2000, dim=-2):
        for analytic in (False, True):
            elbo = elbo_terms(model, guide, x, analytic_kl=analytic).elbo.mean(0)
            assert (elbo < exact - 0.05).all() and (elbo > exact - 2.0).all()


def test_analytic_kl_is_closed_form_only_for_the_top_layer_and_agrees_with_the_elbo():
    """The fast analytic-kl ELBO takes KL(q(z2 | z1) || p(z2)) in closed form and keeps z1's
    term Monte Carlo (p(z1 | z2) reads a z2 drawn after z1). Its mean over draws equals the
    Monte Carlo ELBO's; taking z1's KL in closed form at the drawn z2 would not."""
    model, guide = build_vae(ModelConfig(model="hvae", latent_dim=3, top_latent_dim=2, hidden_dims=[8],
                                         top_hidden_dims=[6]), (1, 2, 2))
    guide_sites, model_sites = guide_and_model_sites(model, guide, torch.ones(2, 1, 2, 2))
    assert list(model_sites) == ["z2", "z1", "x"] and list(guide_sites) == ["z1", "z2"]
    assert closed_form_kl_sites(model_sites, guide_sites) == {"z2"}
    # The linear-Gaussian pair: there z2 follows z1 closely under q, so the biased form is far off.
    truth = LinearTwoLayer(2, 2, seed=3)
    model, guide = truth.pair(widen=1.1)
    x = truth.sample(3, seed=2)
    pyro.set_rng_seed(0)
    draws, n = {}, 4000
    with torch.no_grad(), pyro.plate("draws", n, dim=-2):
        draws["elbo"] = elbo_terms(model, guide, x).elbo  # [n, B]
        draws["analytic"] = elbo_terms(model, guide, x, analytic_kl=True).elbo
        # The biased alternative: both KLs in closed form, z1's at the z2 of the same draw.
        guide_sites, model_sites = guide_and_model_sites(model, guide, x)
        kl = sum(torch.distributions.kl_divergence(guide_sites[s]["fn"], model_sites[s]["fn"]) for s in ("z1", "z2"))
        draws["both"] = model_sites["x"]["fn"].log_prob(x) - kl
    mean = {k: v.mean(0) for k, v in draws.items()}
    se = {k: v.std(0) / math.sqrt(n) for k, v in draws.items()}
    assert ((mean["elbo"] - mean["analytic"]).abs() < 4 * torch.hypot(se["elbo"], se["analytic"])).all()
    assert ((mean["both"] - mean["elbo"]).abs() > 6 * torch.hypot(se["both"], se["elbo"])).any()
    # ReparamELBO is that estimate, summed: the objective trains with it
    pyro.set_rng_seed(3)
    loss = ReparamELBO(analytic_kl=True).loss(model, guide, x)
    pyro.set_rng_seed(3)
    assert loss == pytest.approx(-elbo_terms(model, guide, x, analytic_kl=True).elbo.sum().item(), rel=1e-6)


def test_model_and_guide_sites_line_up():
    model, guide = build_vae(ModelConfig(model="hvae", latent_dim=5, top_latent_dim=3, hidden_dims=[16],
                                         top_hidden_dims=[7, 6]), (1, 4, 4))
    x = torch.bernoulli(torch.full((6, 1, 4, 4), 0.5, dtype=torch.float32))
    with pyro.plate("importance_samples", 2, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    latent = {name: site for name, site in guide_trace.nodes.items() if site["type"] == "sample"
              and not name.startswith(("data", "importance"))}
    assert list(latent) == ["z1", "z2"]
    assert latent["z1"]["value"].shape == (2, 6, 5) and latent["z2"]["value"].shape == (2, 6, 3)
    for name in ("z1", "z2"):
        site = model_trace.nodes[name]
        assert site["value"] is latent[name]["value"]  # the model reads the guide's draws
        assert site["fn"].event_shape == latent[name]["fn"].event_shape  # one log-density per example and draw:
        assert site["fn"].log_prob(site["value"]).shape == latent[name]["fn"].log_prob(site["value"]).shape == (2, 6)
        assert {f.name for f in site["cond_indep_stack"]} == {"importance_samples", "data"}
    # p(z1 | z2) reads the guide's z2: its mean is the top decoder's at that z2
    loc, _ = model.top_decoder(latent["z2"]["value"])
    torch.testing.assert_close(model_trace.nodes["z1"]["fn"].mean, loc)
    # the networks mirror each other: 5 -> 7 -> 6 -> 3 up, 3 -> 6 -> 7 -> 5 down
    up = [m.out_features for m in guide.top_encoder.modules() if isinstance(m, nn.Linear)]
    down = [m.out_features for m in model.top_decoder.modules() if isinstance(m, nn.Linear)]
    assert up == [7, 6, 3, 3] and down == [6, 7, 5, 5]
    assert model.sample_prior(4).shape == (4, 5) and guide.encode(x)[0].shape == (6, 5)
    # the x <-> z1 networks may be convolutional; z1 <-> z2 stays an MLP
    model, guide = build_vae(ModelConfig(model="hvae", network="conv", conv_channels=[4], hidden_dims=[16],
                                         latent_dim=5, top_latent_dim=3, top_hidden_dims=[6]), (1, 4, 4))
    assert make_objective("iwae-dreg", k=2).differentiable_loss(model, guide, x).isfinite()


def test_dreg_on_two_layers_is_the_dreg_formula():
    """DReG with z = (z1, z2), z2 drawn from q(z2 | z1): the guide's gradient is
    sum_k w_k^2 d log w_k / d phi along the draws (log q's parameters held fixed), the
    gradient through z2 into z1 counted once. The hand version builds that surrogate directly."""
    truth = LinearTwoLayer(2, 2, seed=7)
    model, guide = truth.pair(widen=1.3)
    x = truth.sample(3, seed=8)
    k = 5
    eps1 = torch.randn(k, 3, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    eps2 = torch.randn(k, 3, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    noise = iter([eps1, eps2])
    original = dist.Normal.rsample

    def fixed(self, sample_shape=torch.Size()):  # the guide's two draws use eps1 then eps2
        return self.loc + self.scale * next(noise)

    dist.Normal.rsample = fixed
    try:
        loss = DReGIWAELoss(k=k).differentiable_loss(model, guide, x)
    finally:
        dist.Normal.rsample = original
    params = list(guide.parameters())
    got = torch.autograd.grad(loss, params)

    enc, top = guide.encoder, guide.top_encoder
    Normal = torch.distributions.Normal
    loc1, s1 = enc(x)
    z1 = loc1 + s1 * eps1
    loc2, s2 = top(z1)
    z2 = loc2 + s2 * eps2
    with torch.no_grad():  # q's parameters held fixed in log q
        f_loc1, f_s1 = loc1.detach(), s1.detach()
        W2, b2, ls2 = top.weight.detach(), top.bias.detach(), top.log_s.detach()
    log_q = Normal(f_loc1, f_s1).log_prob(z1).sum(-1) + Normal(z1 @ W2.T + b2, ls2.exp()).log_prob(z2).sum(-1)
    m_loc, m_s = model.top_decoder(z2)
    log_p = (Normal(0.0, 1.0).log_prob(z2).sum(-1) + Normal(m_loc, m_s).log_prob(z1).sum(-1)
             + Normal(z1 @ truth.W.T + truth.b, SIGMA).log_prob(x.flatten(1)).sum(-1))
    log_w = log_p - log_q
    surrogate = -(torch.softmax(log_w.detach(), 0) ** 2 * log_w).sum()
    expected = torch.autograd.grad(surrogate, params)
    for ours, theirs in zip(got, expected):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)
    # the value is IWAE's
    pyro.set_rng_seed(4)
    iwae = IWAELoss(k=k).loss(model, guide, x)
    pyro.set_rng_seed(4)
    assert DReGIWAELoss(k=k).loss(model, guide, x) == pytest.approx(iwae, rel=1e-12)


def config(**options):
    c = Config()
    for key, value in options.items():
        c.set(key, value)
    return c


@pytest.mark.parametrize("options, message", [
    ({"model": "hvae", "prior": "vamp"}, "for --model vae; --model hvae keeps its own prior"),
    ({"model": "hvae", "flow": "iaf"}, "for --model vae; --model hvae keeps its own prior"),
    ({"top_latent_dim": 10}, "--top-latent-dim 10 has no effect with --model vae"),
    ({"top_hidden_dims": "64"}, "--top-hidden-dims 64 has no effect with --model vae"),
    ({"model": "hvae", "objective": "analytic-kl", "elbo_implementation": "pyro"}, "biased ELBO for --model hvae"),
    ({"model": "hvae", "top_hidden_dims": "0"}, "top_hidden_dims must be a non-empty list"),
    ({"model": "hvae", "top_latent_dim": 0}, "top_latent_dim must be between"),
])
def test_bad_option_combinations_are_refused(options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config(**options).validate()
    config(model="hvae", objective="iwae-dreg", k=3, top_latent_dim=10).validate()  # a valid one


def test_a_cli_run_trains_evaluates_samples_and_refuses_the_standard_normal_figures(idx_dir, tmp_path, capsys):
    """Through the CLI: 1 epoch of IWAE (K=3), resumed for a second, evaluate log p(x),
    sample; the manifold and prior-check figures exit 2 and write nothing."""
    import csv
    import json

    from pyro_vae.cli import main

    run = tmp_path / "run"
    assert main(["train", "--dataset", "idx", "--data-dir", str(idx_dir), "--model", "hvae", "--latent-dim", "4",
                 "--top-latent-dim", "2", "--hidden-dims", "32", "--top-hidden-dims", "8", "--objective", "iwae",
                 "--k", "3", "--epochs", "1", "--train-limit", "300", "--figures", "false", "--no-progress",
                 "--run-dir", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["latent_dim"], summary["top_latent_dim"], summary["top_hidden_dims"]) == (4, 2, [8])
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0  # checkpoints reopen
    assert [row["epoch"] for row in csv.DictReader(open(run / "metrics.csv"))] == ["1", "2"]
    assert main(["evaluate", str(run), "--k", "20", "--limit", "40", "-o", str(tmp_path / "loglik.json")]) == 0
    assert main(["evaluate", str(run), "--limit", "40", "-o", str(tmp_path / "elbo.json")]) == 0
    loglik = json.loads((tmp_path / "loglik.json").read_text())
    elbo = json.loads((tmp_path / "elbo.json").read_text())
    # one epoch on 300 images: the numbers are poor, but the K=20 estimate lies above the ELBO
    assert 0 > loglik["log_likelihood_mean"] > elbo["elbo"] - 3 * elbo["elbo_stderr"]
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    for kind in ("manifold", "prior-check"):
        assert main(["plot", str(run), "--kind", kind, "-o", str(tmp_path / f"{kind}.png")]) == 2
        assert "--model hvae" in capsys.readouterr().err
        assert not (tmp_path / f"{kind}.png").exists()


def test_the_iwae_paper_config_builds_its_two_layer_networks():
    """configs/binarized-mnist-hvae.toml: 784-200-200-100 and 100-100-100-50 up, mirrored down."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "binarized-mnist-hvae.toml"
    loaded = Config.load(path).validate()
    assert (loaded.model.model, loaded.train.objective, loaded.train.k, loaded.train.batch_size) == ("hvae", "iwae", 5, 20)
    model, guide = build_vae(loaded.model, (1, 28, 28))

    def widths(module):
        return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]

    assert widths(guide.encoder) == [(784, 200), (200, 200), (200, 100), (200, 100)]  # body, then loc and scale
    assert widths(guide.top_encoder) == [(100, 100), (100, 100), (100, 50), (100, 50)]
    assert widths(model.top_decoder) == [(50, 100), (100, 100), (100, 100), (100, 100)]
    assert widths(model.decoder) == [(100, 200), (200, 200), (200, 784)]
    assert all(isinstance(m, nn.Tanh) for m in guide.top_encoder.body if not isinstance(m, nn.Linear))
