"""Each likelihood's log-density against torch.distributions computed by hand."""

import math

import pytest
import torch
from torch.nn import functional as F

from pyro_vae.errors import ConfigError, DataError
from pyro_vae.likelihoods import LIKELIHOODS, make_likelihood

SHAPE = (1, 2, 3)


@pytest.fixture
def output():
    return torch.randn(4, *SHAPE)


def test_bernoulli_matches_binary_cross_entropy(output):
    x = torch.bernoulli(torch.full((4, *SHAPE), 0.5))
    lik = make_likelihood("bernoulli", SHAPE)
    by_hand = -F.binary_cross_entropy_with_logits(output, x, reduction="none").sum((1, 2, 3))
    assert torch.allclose(lik.distribution(output).log_prob(x), by_hand, atol=1e-5)
    # Stable for extreme logits, where log(sigmoid) in float32 would give -inf.
    big = torch.full((1, *SHAPE), 200.0)
    assert torch.isfinite(lik.distribution(big).log_prob(torch.zeros(1, *SHAPE))).all()
    # The fast 0/1 formula equals torch's Bernoulli on binary data, across broadcasting.
    wide = torch.randn(3, 4, *SHAPE) * 10
    reference = torch.distributions.Bernoulli(logits=wide).log_prob(x.expand_as(wide)).sum((-3, -2, -1))
    assert torch.allclose(lik.distribution(wide).log_prob(x), reference, atol=1e-4)


def test_gaussian_fixed_scale_matches_normal_formula(output):
    x = torch.rand(4, *SHAPE)
    lik = make_likelihood("gaussian", SHAPE, scale=0.3)
    by_hand = (-0.5 * ((x - output) / 0.3) ** 2 - math.log(0.3) - 0.5 * math.log(2 * math.pi)).sum((1, 2, 3))
    assert torch.allclose(lik.distribution(output).log_prob(x), by_hand, atol=1e-4)
    assert not list(lik.parameters())


@pytest.mark.parametrize("name,count", [("gaussian-learned", 1), ("gaussian-learned-per-pixel", math.prod(SHAPE))])
def test_learned_gaussian_scales_are_parameters_and_enter_the_density(name, count, output):
    x = torch.rand(4, *SHAPE)
    lik = make_likelihood(name, SHAPE, scale=0.2)
    (param,) = list(lik.parameters())
    assert param.numel() == count
    assert torch.allclose(lik.scale(), torch.tensor(0.2), atol=1e-5)
    with torch.no_grad():
        param.add_(torch.linspace(0, 1, count).reshape(param.shape))
    sigma = lik.scale().expand(output.shape)
    by_hand = torch.distributions.Normal(output, sigma).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(lik.distribution(output).log_prob(x), by_hand, atol=1e-5)
    lik.distribution(output).log_prob(x).sum().backward()
    assert param.grad is not None and param.grad.abs().sum() > 0


def test_continuous_bernoulli_includes_its_normaliser(output):
    x = torch.rand(4, *SHAPE)
    lik = make_likelihood("continuous-bernoulli", SHAPE)
    lam = torch.sigmoid(output).double()
    log_c = torch.log(2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam))  # C(lambda), lambda != 1/2
    by_hand = (x.double() * torch.log(lam) + (1 - x.double()) * torch.log1p(-lam) + log_c).sum((1, 2, 3))
    assert torch.allclose(lik.distribution(output).log_prob(x).double(), by_hand, atol=1e-3)


def test_continuous_bernoulli_integrates_to_one_and_has_its_mean_at_large_logits():
    """torch's normaliser reads probs = sigmoid(l) clamped to 1 - 1.2e-7, so for |l| > 16 log C
    stayed at 2.769: the density integrated to 0.80 at l = 20 and 0.32 at l = 50, and the mean of
    l = -46 was 0.063, not 0.022. A decoder trained on images with a black background gets there."""
    logits = torch.tensor([-1000.0, -50.0, -20.0, -0.1001, -0.0999, 0.0, 0.05, 1.0, 12.0, 20.0, 50.0, 300.0])
    lik = make_likelihood("continuous-bernoulli", (1, 1, 1))
    d = lik.distribution(logits.reshape(-1, 1, 1, 1))
    exact = torch.log(logits.double().abs() / torch.tanh(logits.double().abs() / 2)).nan_to_num(math.log(2.0))
    at_zero = d.log_prob(torch.zeros(len(logits), 1, 1, 1)).double() + F.softplus(logits.double())  # log C(l)
    assert torch.allclose(at_zero, exact, atol=1e-5), (at_zero - exact)
    x = (torch.arange(100_000, dtype=torch.float64) + 0.5) / 100_000  # midpoint rule on [0, 1]
    integral = d.log_prob(x.float().reshape(-1, 1, 1, 1, 1)).double().exp().mean(0)
    assert torch.allclose(integral, torch.ones_like(integral), atol=2e-3), integral
    l = logits.double()
    want = torch.where(l == 0, 0.5, 1 / (1 - torch.exp(-l)) - 1 / l)
    assert torch.allclose(lik.mean(logits.reshape(-1, 1, 1, 1)).flatten().double(), want, atol=1e-5)
    draws = d.base_dist.sample((20_000,))
    assert ((draws >= 0) & (draws <= 1)).all()
    assert torch.allclose(draws.double().mean(0).flatten(), want, atol=0.01)


def test_bernoulli_refuses_grey_pixels_and_names_the_fix():
    lik = make_likelihood("bernoulli", SHAPE)
    with pytest.raises(DataError, match=r"pyro_vae\.binarize\(x\)") as python_error:
        lik.check_support(torch.full((2, *SHAPE), 0.5))
    assert "--" not in str(python_error.value)  # a Python caller is not told of CLI flags
    with pytest.raises(DataError, match="--binarize dynamic"):
        lik.check_support(torch.full((2, *SHAPE), 0.5), hint="binarize them with --binarize dynamic")
    lik.check_support(torch.ones(2, *SHAPE))


def test_continuous_likelihoods_check_their_support():
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        make_likelihood("continuous-bernoulli", SHAPE).check_support(torch.full((1, *SHAPE), 1.5))
    with pytest.raises(DataError, match="NaN"):
        make_likelihood("gaussian", SHAPE).check_support(torch.full((1, *SHAPE), float("nan")))
    make_likelihood("gaussian", SHAPE).check_support(torch.full((1, *SHAPE), -3.0))


def test_registry_holds_every_likelihood():
    assert set(LIKELIHOODS) >= {"bernoulli", "gaussian", "gaussian-learned", "gaussian-learned-per-pixel",
                                "continuous-bernoulli"}


def test_an_unknown_likelihood_name_is_a_sentence_naming_the_registered_ones():
    """make_likelihood("gaussian_learned", ...) raised a bare KeyError: 'gaussian_learned'."""
    with pytest.raises(ConfigError, match=r"unknown likelihood 'gaussian_learned' \(choose from bernoulli, .*\); "
                                          r"did you mean 'gaussian-learned'\?"):
        make_likelihood("gaussian_learned", SHAPE)


def test_gaussian_with_a_learned_scale_per_channel_matches_normal_formula():
    shape = (3, 4, 5)
    lik = make_likelihood("gaussian-learned-per-channel", shape, scale=0.2)
    assert lik.raw_scale.shape == (3, 1, 1)
    with torch.no_grad():
        lik.raw_scale.copy_(torch.tensor([-1.0, 0.0, 2.0]).reshape(3, 1, 1))
    sigma = F.softplus(torch.tensor([-1.0, 0.0, 2.0])) + 1e-3
    mean, x = torch.randn(2, *shape), torch.rand(2, *shape)
    by_hand = sum(
        (-0.5 * ((x[:, c] - mean[:, c]) / sigma[c]) ** 2 - torch.log(sigma[c]) - 0.5 * math.log(2 * math.pi)).sum((1, 2))
        for c in range(3))
    assert torch.allclose(lik.distribution(mean).log_prob(x), by_hand, atol=1e-4)
    # Each channel's sigma gets its own gradient.
    lik.distribution(mean).log_prob(x).sum().backward()
    assert (lik.raw_scale.grad.flatten().abs() > 0).all()


@pytest.mark.parametrize("name", ["bernoulli", "continuous-bernoulli", "gaussian", "gaussian-learned"])
def test_mean_is_the_expected_image_by_hand(name, output):
    """E[x | output]: sigmoid(l) for the Bernoulli; for the continuous Bernoulli with
    p = sigmoid(l), p / (2p - 1) + 1 / (2 artanh(1 - 2p)); the Gaussian's mean is the output."""
    lik = make_likelihood(name, SHAPE)
    p = torch.sigmoid(output)
    want = {"bernoulli": p, "continuous-bernoulli": p / (2 * p - 1) + 1 / (2 * torch.atanh(1 - 2 * p)),
            "gaussian": output, "gaussian-learned": output}[name]
    assert torch.allclose(lik.mean(output), want, atol=1e-4)


def test_the_default_gaussian_scale_is_0_1_and_learned_scales_start_there():
    x, mean = torch.zeros(*SHAPE), torch.ones(*SHAPE)
    for name in ("gaussian", "gaussian-learned", "gaussian-learned-per-pixel"):
        lik = make_likelihood(name, SHAPE)
        by_hand = 6 * (-0.5 * (1 / 0.1) ** 2 - math.log(0.1) - 0.5 * math.log(2 * math.pi))
        assert lik.distribution(mean).log_prob(x).item() == pytest.approx(by_hand, rel=1e-5), name
    assert make_likelihood("gaussian-learned", SHAPE).raw_scale.requires_grad
    assert not any(p.requires_grad for p in make_likelihood("gaussian", SHAPE).parameters())


def test_support_checks_cut_exactly_at_the_support_and_name_the_data_by_default():
    cb = make_likelihood("continuous-bernoulli", SHAPE)
    cb.check_support(torch.tensor([0.0, 1.0]).repeat(3).reshape(1, *SHAPE))  # the closed interval
    for bad in (1.0 + 1e-6, -1e-6):
        with pytest.raises(DataError, match=r"^the data has values outside \[0, 1\]"):
            cb.check_support(torch.full((1, *SHAPE), bad))
    with pytest.raises(DataError, match="^the data has grey-level pixels"):
        make_likelihood("bernoulli", SHAPE).check_support(torch.full((1, *SHAPE), 0.5))
    with pytest.raises(DataError, match="^the data contains NaN"):
        make_likelihood("gaussian", SHAPE).check_support(torch.full((1, *SHAPE), float("inf")))
    with pytest.raises(DataError, match="^the data contains NaN"):
        make_likelihood("bernoulli", SHAPE).check_support(torch.full((1, *SHAPE), float("nan")))


@pytest.mark.parametrize("name", ["bernoulli", "continuous-bernoulli", "gaussian"])
def test_support_checks_name_the_split_they_were_given(name):
    lik = make_likelihood(name, SHAPE)
    lik.check_support(torch.tensor([0.0, 1.0, 1.0]).repeat(2).reshape(1, *SHAPE), "the test split")
    with pytest.raises(DataError, match="^the test split contains NaN or infinite values"):
        lik.check_support(torch.full((1, *SHAPE), float("nan")), "the test split")


@pytest.mark.parametrize("name", ["gaussian-learned", "gaussian-learned-per-channel", "gaussian-learned-per-pixel"])
def test_a_learned_sigma_starts_at_the_scale_given_or_is_refused_below_its_floor(name):
    """--likelihood-scale 0.0005 with a learned sigma (softplus(raw) + 1e-3) started it at 1e-3 silently,
    while config.toml recorded 0.0005."""
    from pyro_vae.config import Config

    x, mean = torch.zeros(*SHAPE), torch.full(SHAPE, 0.01)
    for sigma in (0.002, 0.5):  # the starting density is N(x; mean, sigma) per pixel, by hand
        by_hand = 6 * (-0.5 * (0.01 / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi))
        lik = make_likelihood(name, SHAPE, scale=sigma)
        assert lik.distribution(mean).log_prob(x).item() == pytest.approx(by_hand, rel=1e-5)
    for sigma in (1e-3, 5e-4):
        config = Config()
        config.model.likelihood, config.model.likelihood_scale, config.data.binarize = name, sigma, "none"
        with pytest.raises(ConfigError, match=f"^--likelihood-scale {sigma} cannot be the starting sigma of "
                                              f"--likelihood {name}, which is softplus\\(raw\\) \\+ 0.001, always "
                                              "above 0.001 \\(it would start there\\); give a --likelihood-scale "
                                              "above 0.001.$"):
            config.validate()
        config.validate(check_effect=False)  # a run saved before the rule still opens: its sigma is in its checkpoint
    config.model.likelihood = "gaussian"  # a fixed sigma has no floor
    config.validate()
    with pytest.raises(ConfigError, match="likelihood_scale must be positive, not 0.0"):
        make_likelihood("gaussian", SHAPE, scale=0.0)  # was sigma 0: an infinite density


@pytest.mark.parametrize("name", ["gaussian-learned", "gaussian-learned-per-channel", "gaussian-learned-per-pixel"])
def test_a_learned_sigma_starts_at_a_large_scale_given(name):
    """--likelihood-scale 710 (or more) with a learned sigma raised OverflowError (a traceback, exit 1):
    its starting raw value was log(expm1(710)), and expm1 overflows above 709.78 in float64."""
    for sigma in (50.0, 710.0, 1e4):
        lik = make_likelihood(name, SHAPE, scale=sigma)
        assert torch.allclose(lik.scale(), torch.tensor(sigma)), (sigma, lik.scale())
        assert torch.isfinite(lik.distribution(torch.zeros(SHAPE)).log_prob(torch.rand(SHAPE))).all()


@pytest.mark.parametrize("name", ["gaussian", "gaussian-learned", "gaussian-learned-per-pixel"])
def test_a_sigma_beyond_float32_is_refused_in_one_sentence(name):
    """--likelihood-scale 1e39: a fixed sigma gave an infinite loss (and advised raising the scale), a
    learned one a RuntimeError from torch.full's overflow (a traceback, exit 1)."""
    from pyro_vae.config import FLOAT32_MAX, Config

    assert FLOAT32_MAX == torch.finfo(torch.float32).max
    config = Config()
    config.model.likelihood, config.model.likelihood_scale, config.data.binarize = name, 1e39, "none"
    with pytest.raises(ConfigError, match=r"^--likelihood-scale 1e\+39 is beyond float32's largest number "
                                          r"\(3\.403e\+38\), so sigma would be infinite; give a smaller one\.$"):
        config.validate()
    config.model.likelihood_scale = 1e38
    config.validate()


@pytest.mark.parametrize("name", [name for name, cls in LIKELIHOODS.items() if not cls.uses_scale])
def test_make_likelihood_refuses_a_scale_the_likelihood_has_none_of(name):
    """make_likelihood("bernoulli", shape, scale=0.3) returned a Bernoulli likelihood without a word."""
    with pytest.raises(ConfigError, match=f"scale=0.3 has no effect on the {name} likelihood"):
        make_likelihood(name, SHAPE, scale=0.3)
    assert not make_likelihood(name, SHAPE).uses_scale


def test_make_likelihood_gives_a_gaussian_its_scale_or_01():
    assert make_likelihood("gaussian", SHAPE, scale=0.3).scale().item() == pytest.approx(0.3)
    assert make_likelihood("gaussian", SHAPE).scale().item() == pytest.approx(0.1)
    assert make_likelihood("gaussian-learned", SHAPE, scale=0.3).scale().item() == pytest.approx(0.3)
