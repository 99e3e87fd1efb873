"""The dequantized estimate against exact discrete log-probabilities, the kinds of number,
which kinds can be ranked, and bits per dimension."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae.cli import main
from pyro_vae.errors import DataError
from pyro_vae.inference import kinds
from pyro_vae.inference.dequantize import dequantize, dequantized_log_likelihood, score_log_likelihood
from pyro_vae.inference.loglik import importance_log_likelihood
from pyro_vae.likelihoods import make_likelihood


def _factorized(likelihood_dist):
    """A model whose p(x | z) does not depend on z, and a guide equal to the prior: every
    importance weight is exactly log p(x), whatever K."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 1), 1.0).to_event(1))
            pyro.sample("x", likelihood_dist(z.shape[:-1] + x.shape[1:]), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 1), 1.0).to_event(1))

    return model, guide


def _bin_widths(k):
    """Widths of the dequantization bins, by hand: 1/255, and 1/510 at levels 0 and 255."""
    return torch.where((k == 0) | (k == 255), 1 / 510, 1 / 255).double()


class Histogram(dist.TorchDistribution):
    """A density constant on each dequantization bin, p(y) = P(k) / |B_k|, so that the
    dequantized bound is tight: E_u[log p(y)] + log |B_k| = log P(k) exactly."""

    arg_constraints = {}
    support = dist.constraints.real

    def __init__(self, log_masses, batch_shape):
        self.log_masses = log_masses  # [256]
        super().__init__(torch.Size(batch_shape), validate_args=False)

    def log_prob(self, y):
        k = torch.round(y * 255).long()
        return (self.log_masses[k] - _bin_widths(k).log()).to(y.dtype).expand(self.batch_shape)


def test_the_bound_is_exact_for_a_density_constant_on_each_bin():
    torch.manual_seed(0)
    log_masses = torch.log_softmax(torch.randn(256) * 2, 0)
    model, guide = _factorized(lambda shape: Histogram(log_masses, shape).to_event(3))
    k = torch.randint(0, 256, (50, 1, 4, 4))
    k[0] = 0  # every pixel at an edge level (the half-width bins)
    k[1] = 255
    estimate = dequantized_log_likelihood(lambda y: importance_log_likelihood(model, guide, y, k=3), k / 255.0, seed=3)
    exact = log_masses[k].sum((1, 2, 3))
    assert torch.allclose(estimate.log_likelihood, exact, atol=1e-3)


def test_dequantized_gaussian_agrees_with_its_exact_discrete_mass_within_the_standard_error():
    loc = torch.linspace(0.1, 0.9, 64).reshape(1, 8, 8)
    sigma = 0.1
    lik = make_likelihood("gaussian", (1, 8, 8), scale=sigma)
    model, guide = _factorized(lambda shape: lik.distribution(loc.expand(shape)))
    torch.manual_seed(1)
    k = torch.distributions.Normal(loc * 255, sigma * 255).sample((400,)).round().clamp(0, 255).long()
    x = k / 255.0
    # The mass the density gives each 8-bit image: Phi over each bin cut to [0, 1] (by hand).
    lower = torch.where(k == 0, 0.0, (k.double() - 0.5) / 255)
    upper = torch.where(k == 255, 1.0, (k.double() + 0.5) / 255)
    normal = torch.distributions.Normal(loc.double(), sigma)
    exact = torch.log(normal.cdf(upper) - normal.cdf(lower)).sum((1, 2, 3))
    estimate = dequantized_log_likelihood(lambda y: importance_log_likelihood(model, guide, y, k=2), x, seed=0)
    # Paired over the same images, so the standard error is that of the dequantization noise.
    error = estimate.log_likelihood.double() - exact
    stderr = error.std().item() / math.sqrt(len(error))
    assert 0 < stderr < 0.01
    assert abs(error.mean().item()) < 3 * stderr
    assert error.mean().item() < 3 * stderr  # a lower bound (Jensen), up to noise
    # The (x + u)/256 grid would be off by about D log(256/255) = 0.25 nats here, many standard errors.
    assert 64 * math.log(256 / 255) > 20 * stderr


def test_dequantization_is_seeded_and_stays_in_each_bin_inside_the_unit_interval():
    x = torch.randint(0, 256, (20, 1, 5, 5)) / 255.0
    y1, log_volume = dequantize(x, torch.Generator().manual_seed(7))
    y2, _ = dequantize(x, torch.Generator().manual_seed(7))
    assert torch.equal(y1, y2) and (y1 >= 0).all() and (y1 <= 1).all()
    assert ((y1 - x).abs() <= 0.5 / 255 + 1e-7).all()
    assert torch.allclose(log_volume, _bin_widths(torch.round(x * 255).long()).log().sum((1, 2, 3)).float())
    with pytest.raises(DataError, match="256-level grid"):
        dequantize(torch.full((1, 1, 2, 2), 0.3), torch.Generator())


def test_score_names_the_kind_and_dequantizes_only_continuous_likelihoods_on_8_bit_data():
    x = torch.randint(0, 256, (5, 1, 2, 2)) / 255.0
    seen = []

    def estimate(images):
        seen.append(images)
        return importance_log_likelihood(*_factorized(
            lambda shape: make_likelihood("gaussian", (1, 2, 2)).distribution(torch.full(shape, 0.5))), images, k=1)

    _, kind = score_log_likelihood(estimate, x, "unit-interval", binary_data=False)
    assert kind == kinds.DEQUANTIZED_BOUND and not torch.equal(seen[-1], x)
    default = seen[-1]  # the noise is drawn with seed 0 unless told otherwise
    score_log_likelihood(estimate, x, "unit-interval", binary_data=False, seed=0)
    assert torch.equal(seen[-1], default)
    score_log_likelihood(estimate, x, "unit-interval", binary_data=False, seed=1)
    assert not torch.equal(seen[-1], default)
    _, kind = score_log_likelihood(estimate, x, "unit-interval", binary_data=False, dequantized=False)
    assert kind == kinds.DENSITY and torch.equal(seen[-1], x)
    _, kind = score_log_likelihood(estimate, x.round(), "unit-interval", binary_data=True)
    assert kind == kinds.DENSITY and torch.equal(seen[-1], x.round())
    assert score_log_likelihood(estimate, x, "8-bit", binary_data=False)[1] == kinds.EIGHT_BIT_MASS
    assert score_log_likelihood(estimate, x.round(), "8-bit", binary_data=True)[1] == kinds.BINARY_MASS
    assert score_log_likelihood(estimate, x.round(), "binary", binary_data=True)[1] == kinds.BINARY_MASS


@pytest.mark.parametrize("a,b,ok", [
    (kinds.BINARY_MASS, kinds.EIGHT_BIT_MASS, False),
    (kinds.BINARY_MASS, kinds.DEQUANTIZED_BOUND, False),
    (kinds.EIGHT_BIT_MASS, kinds.DEQUANTIZED_BOUND, True),
    (kinds.DENSITY, kinds.EIGHT_BIT_MASS, False),
    (kinds.DENSITY, kinds.BINARY_MASS, False),
    (kinds.BINARY_MASS, kinds.BINARY_MASS, True),
    (kinds.EIGHT_BIT_MASS, kinds.EIGHT_BIT_MASS, True),
])
def test_only_numbers_on_the_same_data_and_scale_are_ranked(a, b, ok):
    assert kinds.comparable(a, b).ok is ok and kinds.comparable(b, a).ok is ok
    if not ok:
        assert "cannot be ranked" in kinds.comparable(a, b).reason
    with pytest.raises(ValueError):
        kinds.comparable(a, "nats")


@pytest.mark.parametrize("a,b,words", [
    (kinds.DENSITY, kinds.DENSITY, "neither is bounded above nor comparable with a probability mass"),
    (kinds.EIGHT_BIT_MASS, kinds.DEQUANTIZED_BOUND, "the dequantized one is a lower bound on its model's"),
    (kinds.BINARY_MASS, kinds.BINARY_MASS, f"both are of one kind ({kinds.BINARY_MASS})"),
])
def test_a_ranking_that_is_allowed_says_what_the_numbers_are(a, b, words):
    comparison = kinds.comparable(a, b)
    assert comparison.ok and comparison.reason.endswith(words)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 64)])
def test_bits_per_dim_is_nats_over_d_ln_2(shape):
    d = math.prod(shape)
    assert kinds.dimensions(shape) == d in (784, 12288)
    assert kinds.bits_per_dim(-d * math.log(2) * 1.25, d) == pytest.approx(1.25)
    # A uniform categorical over the 256 levels spends exactly 8 bits on every value.
    lik = make_likelihood("categorical-256", shape)
    x = torch.randint(0, 256, (3,) + shape) / 255.0
    nats = lik.distribution(torch.zeros((3,) + lik.output_shape(shape))).log_prob(x)
    fields = kinds.describe(nats.mean().item(), 0.0, shape, kinds.EIGHT_BIT_MASS, "categorical-256", "none")
    assert fields["dimensions"] == d and fields["bits_per_dim"] == pytest.approx(8.0, abs=1e-5)


def test_evaluate_reports_bits_per_dim_and_the_kind(idx_dir, tmp_path, capsys):
    tiny = ["--dataset", "idx", "--data-dir", str(idx_dir), "--latent-dim", "2", "--hidden-dims", "16",
            "--epochs", "1", "--batch-size", "100", "--train-limit", "200", "--no-progress"]
    for likelihood, kind in (("discretized-logistic", kinds.EIGHT_BIT_MASS),
                             ("gaussian-learned", kinds.DEQUANTIZED_BOUND)):
        run = tmp_path / likelihood
        assert main(["train", "--run-dir", str(run), "--likelihood", likelihood, *tiny]) == 0
        summary = json.loads((run / "summary.json").read_text())
        # the bits/dim with its standard error, as the nats have theirs (it was printed bare)
        bits = f"{summary['bits_per_dim']:.4f} ± {summary['bits_per_dim_stderr']:.4f} bits/dim"
        assert bits in capsys.readouterr().out
        assert main(["evaluate", str(run), "--limit", "20"]) == 0
        elbo = json.loads((run / "evaluation.json").read_text())
        assert f"{elbo['bits_per_dim']:.4f} ± {elbo['bits_per_dim_stderr']:.4f} bits/dim" in capsys.readouterr().out
        assert elbo["bits_per_dim_stderr"] == pytest.approx(elbo["elbo_stderr"] / (784 * math.log(2)))
        assert summary["likelihood"] == likelihood and summary["binarize"] == "none"
        assert summary["bits_per_dim"] == pytest.approx(-summary["test_elbo"] / (784 * math.log(2)))
        assert main(["evaluate", str(run), "--k", "3", "--limit", "20"]) == 0
        out = capsys.readouterr().out
        loglik = json.loads((run / "loglik.json").read_text())
        assert loglik["kind"] == kind and kind in out and "bits/dim" in out
        assert loglik["dimensions"] == 784 and loglik["likelihood"] == likelihood
        assert loglik["bits_per_dim"] == pytest.approx(-loglik["log_likelihood_mean"] / (784 * math.log(2)))
        assert loglik["bits_per_dim"] > 0  # a probability mass, at most 1
    # another request into the default file replaces it only when -o names it
    assert main(["evaluate", str(run), "--k", "3", "--limit", "20", "--density"]) == 2
    assert "already holds a log p(x) estimate with K=3 on 20 test images" in capsys.readouterr().err
    assert json.loads((run / "loglik.json").read_text())["kind"] == kinds.DEQUANTIZED_BOUND
    assert main(["evaluate", str(run), "--k", "3", "--limit", "20", "--density", "-o", str(run / "loglik.json")]) == 0
    assert json.loads((run / "loglik.json").read_text())["kind"] == kinds.DENSITY


@pytest.mark.parametrize("dataset,likelihood,what", [
    ("binarized-mnist", "gaussian", "a density already: binary images are not dequantized"),
    ("binarized-mnist", "discretized-logistic", "a probability mass on binary data"),
    ("fashion-mnist", "discretized-logistic", "a probability mass on 8-bit data"),
    ("fashion-mnist", "bernoulli", "a probability mass on binary data"),
])
def test_density_refused_where_it_changes_nothing_names_the_kind_the_number_has(dataset, likelihood, what):
    """A Gaussian run on binarized MNIST refused --density saying its log p(x) "is a probability mass of
    binary or discrete data"; evaluate --k printed the same number as "density (not comparable)"."""
    from types import SimpleNamespace

    from pyro_vae.cli import _refuse_evaluation
    from pyro_vae.config import Config
    from pyro_vae.errors import PyroVAEError

    config = Config()
    config.data.dataset, config.model.likelihood = dataset, likelihood
    config.validate()
    run = SimpleNamespace(run_dir="RUN", config=config, model=SimpleNamespace(likelihood=make_likelihood(
        likelihood, (1, 28, 28))))
    args = SimpleNamespace(density=True, k=3, label_fidelity=False, seed_given=False, limit=0)
    with pytest.raises(PyroVAEError, match=f"^--density has no effect on RUN: its log p\\(x\\) is {what}, scored "
                                           "as it is; drop --density.$"):
        _refuse_evaluation(args, run)


def test_a_conditional_score_dequantizes_and_counts_the_bins_of_the_scored_pixels_alone():
    """Quadrant completion scores log p(x_m | x_g): its dequantized bound must add the bin volumes of
    the missing pixels x_m alone and keep x_g, the values conditioned on, as they are."""
    torch.manual_seed(0)
    log_masses = torch.log_softmax(torch.randn(256) * 2, 0)
    scored = torch.zeros(1, 4, 4, dtype=torch.bool)
    scored[:, 2:, 2:] = True  # four scored pixel values of sixteen

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 1), 1.0).to_event(1))
            missing = x[:, scored]  # [B, 4]
            pyro.sample("x", Histogram(log_masses, missing.shape).to_event(1), obs=missing)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 1), 1.0).to_event(1))

    k = torch.randint(0, 256, (30, 1, 4, 4))
    seen = []

    def estimate(y):
        seen.append(y)
        return importance_log_likelihood(model, guide, y, k=2)

    result, kind = score_log_likelihood(estimate, k / 255.0, "unit-interval", binary_data=False, seed=1,
                                        scored=scored)
    assert kind == kinds.DEQUANTIZED_BOUND
    exact = log_masses[k[:, scored]].sum(1)  # log P(k_m): the bound is exact for a histogram density
    assert torch.allclose(result.log_likelihood, exact, atol=1e-3)
    y = seen[-1]
    assert torch.equal(y[:, ~scored], (k / 255.0)[:, ~scored])  # x_g as it is
    assert not torch.equal(y[:, scored], (k / 255.0)[:, scored])


def test_evaluate_dequantizes_a_quadrant_runs_missing_pixels_alone(idx_dir, tmp_path, capsys, monkeypatch):
    """evaluate --k of a quadrant run with a continuous likelihood dequantized the given quadrant too and
    added its 196 bin volumes (about -1,100 nats) to log p(x_m | x_g), which scores the 588 others."""
    import pyro_vae.inference.loglik as loglik
    from pyro_vae.models.quadrant import quadrant_mask
    from pyro_vae.runs import open_run

    run = tmp_path / "quadrant"
    assert main(["train", "--model", "quadrant", "--likelihood", "gaussian-learned", "--dataset", "idx",
                 "--data-dir", str(idx_dir), "--latent-dim", "2", "--hidden-dims", "16", "--epochs", "1",
                 "--train-limit", "200", "--no-progress", "--figures", "false", "--run-dir", str(run)]) == 0
    seen, estimator = [], loglik.importance_log_likelihood

    def recorded(model, guide, x, **kwargs):
        result = estimator(model, guide, x, **kwargs)
        seen.append((x.clone(), result.log_likelihood.clone()))
        return result

    monkeypatch.setattr(loglik, "importance_log_likelihood", recorded)
    assert main(["evaluate", str(run), "--k", "2", "--limit", "10", "--subset", "first"]) == 0
    capsys.readouterr()
    y = torch.cat([x for x, _ in seen])
    density = torch.cat([value for _, value in seen])
    x = open_run(run).dataset().test.head(10).images
    given = quadrant_mask((1, 28, 28), 1)
    assert torch.equal(y[:, given], x[:, given])  # conditioned on as they are
    assert not torch.equal(y[:, ~given], x[:, ~given])
    widths = _bin_widths(torch.round(x * 255).long())
    log_volume = (widths.log() * (~given)).sum((1, 2, 3))  # the 588 missing pixel values' bins
    result = json.loads((run / "loglik.json").read_text())
    assert result["log_likelihood_mean"] == pytest.approx((density.double() + log_volume).mean().item(), abs=1e-2)
