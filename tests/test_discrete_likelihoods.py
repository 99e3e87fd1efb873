"""The discretized likelihoods on the 256 grey levels: masses that sum to one, agree with
quadrature of the continuous density over each bin, stay finite (values and gradients) at
the edge bins and the scale floor, and refuse data off the grid."""

import math

import pytest

from pyro_vae.runs import CLI_SUPPORT_HINTS
import torch

from pyro_vae import discrete
from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.errors import ConfigError, DataError
from pyro_vae.likelihoods import LIKELIHOODS, make_likelihood

EIGHT_BIT = ("discretized-logistic", "discretized-gaussian", "discretized-logistic-mixture", "categorical-256")
SHAPE = (1, 2, 3)


def _raw_output(name, loc, raw_scale, generator):
    """A decoder output for ``name`` of shape [B, P, C, H, W] flattened to [B, P*C, H, W],
    with the given locations and raw scales (mixture: spread over the components)."""
    lik = make_likelihood(name, SHAPE)
    p = lik.params_per_channel
    b = loc.shape[0]
    out = torch.randn((b, p) + SHAPE, generator=generator) * 3  # logits for categorical and mixture
    if name in ("discretized-logistic", "discretized-gaussian"):
        out[:, 0], out[:, 1] = loc, raw_scale
    elif name == "discretized-logistic-mixture":
        m = lik.components
        out[:, m:2 * m] = loc.unsqueeze(1) + torch.linspace(-0.3, 0.3, m).reshape(1, m, 1, 1, 1)
        out[:, 2 * m:] = raw_scale.unsqueeze(1)
    return lik, out.reshape((b, p * SHAPE[0]) + SHAPE[1:])


PARAMETERS = {
    "ordinary": (lambda g: torch.rand((4,) + SHAPE, generator=g), lambda g: torch.randn((4,) + SHAPE, generator=g) - 3),
    "at the scale floor": (lambda g: torch.rand((4,) + SHAPE, generator=g), lambda g: torch.full((4,) + SHAPE, -40.0)),
    "means on bin edges and at 0 and 1": (
        lambda g: torch.tensor([0.0, 1.0, 0.5 / 255, 127.5 / 255]).reshape(4, 1, 1, 1).expand((4,) + SHAPE).clone(),
        lambda g: torch.full((4,) + SHAPE, -9.0)),
    "means far off [0, 1]": (lambda g: torch.tensor([-40.0, 41.0, -3.0, 7.0]).reshape(4, 1, 1, 1).expand((4,) + SHAPE).clone(),
                             lambda g: torch.full((4,) + SHAPE, -40.0)),
    "huge scales": (lambda g: torch.rand((4,) + SHAPE, generator=g), lambda g: torch.full((4,) + SHAPE, 1e4)),
}


@pytest.mark.parametrize("case", PARAMETERS)
@pytest.mark.parametrize("name", EIGHT_BIT)
def test_the_256_masses_sum_to_one_per_pixel(name, case):
    g = torch.Generator().manual_seed(0)
    loc, raw = (make(g) for make in PARAMETERS[case])
    lik, out = _raw_output(name, loc, raw, g)
    log_masses = lik.distribution(out).base_dist.log_masses()
    assert log_masses.shape == (256, 4) + SHAPE
    assert torch.isfinite(log_masses).all() or case == "means far off [0, 1]"
    assert torch.allclose(log_masses.exp().sum(0), torch.ones(()), atol=1e-5)
    # log_prob of every level agrees with the table of masses
    x = torch.arange(256.0).reshape(256, 1, 1, 1, 1).expand((256, 4) + SHAPE) / 255
    assert torch.allclose(lik.distribution(out).base_dist.log_prob(x), log_masses, atol=1e-5)


def _simpson(f, lower, upper, n=200):
    """Composite Simpson rule of ``f`` over [lower, upper] (float64 tensors, same shape)."""
    t = torch.linspace(0, 1, n + 1, dtype=torch.float64).reshape(-1, *([1] * lower.dim()))
    y = f(lower + (upper - lower) * t)
    weights = torch.ones(n + 1, dtype=torch.float64)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    return (upper - lower) / (3 * n) * torch.tensordot(weights, y, dims=([0], [0]))


def _logistic_pdf(loc, scale):
    return lambda y: torch.exp(-(y - loc) / scale) / (scale * (1 + torch.exp(-(y - loc) / scale)) ** 2)


def _normal_pdf(loc, scale):
    return lambda y: torch.exp(-0.5 * ((y - loc) / scale) ** 2) / (scale * math.sqrt(2 * math.pi))


def _bin_integrals(pdf, loc, scale):
    """The density integrated over each level's bin by quadrature, the edge bins from and to
    60 scales beyond the mean (the tails past that are below 1e-20): [256, *loc.shape]."""
    k = torch.arange(256, dtype=torch.float64).reshape(256, *([1] * loc.dim()))
    lower, upper = (k - 0.5) / 255 + 0 * loc, (k + 0.5) / 255 + 0 * loc
    far_low, far_high = torch.minimum(loc - 60 * scale, lower), torch.maximum(loc + 60 * scale, upper)
    lower = torch.where(k == 0, far_low.expand_as(lower), lower)
    upper = torch.where(k == 255, far_high.expand_as(upper), upper)
    return _simpson(pdf, lower, upper, n=2000)


@pytest.mark.parametrize("loc,scale", [(0.5, 0.1), (0.0, 0.01), (1.0, 0.003), (0.2, 1e-3), (0.73, 0.6), (-0.2, 0.05)])
def test_masses_agree_with_quadrature_of_the_density(loc, scale):
    loc_t, scale_t = torch.tensor([loc], dtype=torch.float64), torch.tensor([scale], dtype=torch.float64)
    for dist_cls, pdf in ((discrete.DiscretizedLogistic, _logistic_pdf), (discrete.DiscretizedNormal, _normal_pdf)):
        exact = dist_cls(loc_t, scale_t).log_masses().exp()
        numeric = _bin_integrals(pdf(loc_t, scale_t), loc_t, scale_t)
        assert torch.allclose(exact, numeric, atol=1e-8, rtol=1e-6), dist_cls.__name__


def test_mixture_masses_are_the_weighted_sum_of_its_components_by_quadrature():
    logits = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    loc = torch.tensor([[0.1, 0.5, 0.95]], dtype=torch.float64)
    scale = torch.tensor([[0.02, 0.2, 0.004]], dtype=torch.float64)
    mixture = discrete.DiscretizedLogisticMixture(logits, loc, scale).log_masses().exp()
    weights = torch.softmax(logits, -1)
    numeric = sum(weights[0, m] * _bin_integrals(_logistic_pdf(loc[:, m], scale[:, m]), loc[:, m], scale[:, m])
                  for m in range(3))
    assert torch.allclose(mixture, numeric, atol=1e-8, rtol=1e-6)


def test_categorical_masses_are_the_softmax():
    logits = torch.randn(3, 256)
    dist = discrete.Categorical256(logits)
    k = torch.tensor([0, 17, 255])
    assert torch.allclose(dist.log_prob(k / 255.0), torch.log_softmax(logits, -1)[torch.arange(3), k])


@pytest.mark.parametrize("name", EIGHT_BIT)
def test_gradients_are_finite_at_the_edge_bins_and_the_scale_floor(name):
    g = torch.Generator().manual_seed(1)
    loc = torch.tensor([0.0, 1.0, -5.0, 6.0]).reshape(4, 1, 1, 1).expand((4,) + SHAPE).clone()
    for raw_scale in (-40.0, -9.0, 0.0, 30.0):  # the floor, just above it, ordinary, huge
        lik, out = _raw_output(name, loc, torch.full((4,) + SHAPE, raw_scale), g)
        out.requires_grad_(True)
        # edge levels 0 and 255, their neighbours, and a middle level
        x = torch.tensor([0.0, 255.0, 1.0, 254.0]).reshape(4, 1, 1, 1).expand((4,) + SHAPE) / 255
        x = x.clone()
        x[..., 0, 0] = 128 / 255
        log_p = lik.distribution(out).log_prob(x)
        log_p.sum().backward()
        assert torch.isfinite(out.grad).all(), (name, raw_scale)
        assert torch.isfinite(log_p).all() or raw_scale == -40.0  # a far-off mean at the floor: mass ~ e^{-big}


def test_a_well_placed_narrow_mass_reaches_one_and_a_wide_one_spreads():
    k = torch.tensor([0, 77, 255])
    sharp = discrete.DiscretizedLogistic(k / 255.0, torch.full((3,), discrete.SCALE_FLOOR))
    assert torch.allclose(sharp.log_prob(k / 255.0), torch.zeros(3), atol=1e-6)
    wide = discrete.DiscretizedLogistic(torch.tensor([0.5]), torch.tensor([1e3]))
    # all but ~1/255 of 1/(4 * 1000) of the mass lies in the two open edge bins
    assert wide.log_masses().exp()[[0, 255]].sum() > 1 - 1e-3


def test_mean_and_samples_follow_the_masses():
    dist = discrete.DiscretizedLogistic(torch.tensor([0.5, 0.2]), torch.tensor([0.1, 0.03]))
    assert abs(dist.mean[0].item() - 0.5) < 1e-6  # symmetric about 0.5 (level k <-> 255 - k)
    torch.manual_seed(0)
    draws = dist.sample((20000,))
    assert not discrete.off_grid(draws).any()
    stderr = draws.std(0) / math.sqrt(len(draws))
    assert ((draws.mean(0) - dist.mean).abs() < 4 * stderr).all()


@pytest.mark.parametrize("name", EIGHT_BIT)
def test_the_mean_image_is_made_on_the_decoder_outputs_device(name):
    """The 256 levels of ``log_masses`` (the mean's and the draws') were made on the CPU, so a
    decoder on a GPU (--device cuda) failed to give its mean image (every samples and
    reconstruction figure of a discretized-logistic, -gaussian or -mixture run) with torch's
    "Expected all tensors to be on the same device"; the meta device stands in for the GPU."""
    lik = make_likelihood(name, SHAPE)
    output = torch.zeros((2, lik.params_per_channel * SHAPE[0]) + SHAPE[1:], device="meta")
    mean = lik.mean(output)
    assert mean.device.type == "meta" and mean.shape == (2,) + SHAPE


@pytest.mark.parametrize("name", EIGHT_BIT)
def test_off_grid_data_are_refused_in_one_sentence(name):
    lik = make_likelihood(name, SHAPE)
    with pytest.raises(DataError, match=r"not on the 256-level grid k/255.*not binarized") as err:
        lik.check_support(torch.full((2,) + SHAPE, 0.5))  # 127.5/255
    assert "--" not in str(err.value)  # a Python caller gets Python advice, no CLI flags
    with pytest.raises(DataError, match=r"not on the 256-level grid k/255.*--binarize none"):
        lik.check_support(torch.full((2,) + SHAPE, 0.5), hint=CLI_SUPPORT_HINTS[name])
    with pytest.raises(DataError):
        lik.check_support(torch.full((2,) + SHAPE, 1.0 + 1 / 255))
    lik.check_support(torch.randint(0, 256, (2,) + SHAPE) / 255.0)
    lik.check_support(torch.randint(0, 2, (2,) + SHAPE).float())  # binary data lie on the grid too


def test_likelihoods_declare_their_data_and_scale_use():
    kinds = {name: cls.data_kind for name, cls in LIKELIHOODS.items()}
    assert kinds["bernoulli"] == "binary" and kinds["continuous-bernoulli"] == "unit-interval"
    assert all(kinds[name] == "8-bit" and not LIKELIHOODS[name].uses_scale for name in EIGHT_BIT)
    assert LIKELIHOODS["discretized-logistic-mixture"].output_shape((3, 8, 8)) == (45, 8, 8)
    assert LIKELIHOODS["categorical-256"].output_shape((1, 28, 28)) == (256, 28, 28)


@pytest.mark.parametrize("network,shape", [("mlp", (1, 28, 28)), ("conv", (3, 16, 16))])
@pytest.mark.parametrize("name", ["discretized-logistic-mixture", "categorical-256"])
def test_decoders_output_every_map_the_likelihood_reads(network, shape, name):
    channels = {"conv_channels": [4, 8]} if network == "conv" else {}  # build_vae refuses them for an MLP
    config = ModelConfig(likelihood=name, network=network, hidden_dims=[16], latent_dim=3, **channels)
    model, guide = build_vae(config, shape)
    z = torch.randn(5, 2, 3)
    out = model.decoder(z)
    assert out.shape == (5, 2, LIKELIHOODS[name].params_per_channel * shape[0]) + shape[1:]
    x = torch.randint(0, 256, (2,) + shape) / 255.0
    log_p = model.likelihood.distribution(out).log_prob(x)
    assert log_p.shape == (5, 2) and (log_p < 0).all()
    assert model.decode_mean(z[0]).shape == (2,) + shape


def test_quadrant_completion_refuses_likelihoods_with_several_maps_per_pixel():
    config = ModelConfig(model="quadrant", likelihood="discretized-logistic", hidden_dims=[16])
    with pytest.raises(ConfigError, match="quadrant"):
        build_vae(config, (1, 28, 28))
