"""The VAE model and guide as Pyro programs: sites, shapes, observed and latent; and the
network building blocks against hand computations."""

import re

import pytest
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.nn import functional as F

from pyro_vae import nn as vae_nn
from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.errors import ConfigError


@pytest.mark.parametrize("network", ["mlp", "conv"])
@pytest.mark.parametrize("scale_transform", ["softplus", "exp"])
def test_traces_have_matching_sites_and_shapes(network, scale_transform):
    channels = {"conv_channels": [4, 8]} if network == "conv" else {}  # build_vae refuses them for an MLP
    model, guide = build_vae(ModelConfig(network=network, latent_dim=7, hidden_dims=[32],
                                         scale_transform=scale_transform, **channels), (1, 28, 28))
    x = torch.bernoulli(torch.rand(5, 1, 28, 28))
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    g_sites = {n: s for n, s in guide_trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}
    m_sites = {n: s for n, s in model_trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}
    assert set(g_sites) == {"z"} and set(m_sites) == {"z", "x"}
    assert not g_sites["z"]["is_observed"] and not m_sites["z"]["is_observed"]
    assert m_sites["x"]["is_observed"] and torch.equal(m_sites["x"]["value"], x)
    assert g_sites["z"]["value"].shape == (5, 7)
    assert torch.equal(m_sites["z"]["value"], g_sites["z"]["value"])  # replayed, not redrawn
    assert m_sites["z"]["fn"].event_shape == (7,) and m_sites["z"]["fn"].batch_shape == (5,)
    assert m_sites["x"]["fn"].event_shape == (1, 28, 28) and m_sites["x"]["fn"].batch_shape == (5,)
    assert [f.name for f in m_sites["x"]["cond_indep_stack"]] == ["data"]
    # The prior is N(0, I); the guide's scale respects its floor.
    assert torch.allclose(m_sites["z"]["fn"].base_dist.loc, torch.zeros(5, 7))
    assert (g_sites["z"]["fn"].base_dist.scale >= 1e-3).all()


@pytest.mark.parametrize("options,message", [
    # each built a model that does not use it: a Bernoulli model with no sigma, a flow-less guide, ...
    ({"likelihood_scale": 0.5}, "ModelConfig: likelihood_scale 0.5 has no effect with likelihood bernoulli "
                                r"\(it is the Gaussian likelihoods' sigma\); drop it or choose likelihood gaussian\."),
    ({"flow_steps": 7}, "ModelConfig: flow_steps 7 has no effect with flow none; drop it or choose a flow"),
    ({"conv_channels": [4]}, "ModelConfig: conv_channels 4 has no effect with network mlp; drop it or choose network conv"),
    ({"prior_components": 3}, "ModelConfig: prior_components 3 has no effect with prior standard"),
    # a learned sigma starting at its floor (softplus(raw) + 0.001) starts just above it
    ({"likelihood": "gaussian-learned", "likelihood_scale": 0.001}, "cannot be the starting sigma"),
])
def test_build_vae_refuses_a_model_option_of_no_effect_as_the_cli_does(options, message):
    config = ModelConfig(latent_dim=2, hidden_dims=[8], **options)
    with pytest.raises(ConfigError, match=message):
        build_vae(config, (1, 4, 4))
    build_vae(config, (1, 4, 4), check_effect=False)  # a saved run's config is rebuilt as it ran


@pytest.mark.parametrize("image_shape", [(28, 28), (1, 28, 0), (1.0, 28, 28), 784])
def test_build_vae_refuses_an_image_shape_that_is_not_c_h_w(image_shape):
    """(28, 28) failed as "not enough values to unpack (expected 3, got 2)"."""
    with pytest.raises(ConfigError, match=rf"image_shape must be \(C, H, W\), .*not {re.escape(repr(image_shape))}\.$"):
        build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), image_shape)
    assert build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), torch.Size([1, 4, 4]))[0].decoder.image_shape == (1, 4, 4)


def test_networks_accept_extra_leading_dimensions():
    model, guide = build_vae(ModelConfig(network="conv", latent_dim=3, hidden_dims=[16], conv_channels=[4]),
                             (1, 28, 28))
    z = torch.randn(2, 5, 3)
    assert model.decoder(z).shape == (2, 5, 1, 28, 28)
    loc, scale = guide.encode(torch.rand(2, 5, 1, 28, 28))
    assert loc.shape == scale.shape == (2, 5, 3)
    # Leading dimensions are independent: decoding a slice equals slicing the decoding.
    assert torch.allclose(model.decoder(z)[1], model.decoder(z[1]), atol=1e-6)


@pytest.mark.parametrize("size, channels", [(32, [16, 32, 32]), (64, [16, 32, 32, 32]), (128, [8, 16, 16, 16, 16])])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_conv_vae_for_colour_squares_of_32_64_and_128(size, channels, batch_norm):
    config = ModelConfig(network="conv", conv_channels=channels, hidden_dims=[64], latent_dim=200,
                         likelihood="gaussian-learned-per-channel", batch_norm=batch_norm)
    model, guide = build_vae(config, (3, size, size))
    x = torch.rand(4, 3, size, size)
    loc, scale = guide.encode(x)
    assert loc.shape == scale.shape == (4, 200)
    assert model.decode_mean(loc).shape == (4, 3, size, size)
    has_norm = any(isinstance(m, torch.nn.BatchNorm2d) for m in list(model.modules()) + list(guide.modules()))
    assert has_norm == batch_norm
    # In evaluation an example's code does not depend on the rest of its batch.
    model.eval(), guide.eval()
    alone = guide.encode(x[:1])[0]
    assert torch.allclose(alone, guide.encode(x)[0][:1], atol=1e-5)


# -- network building blocks: activations by name, layer order, broadcasting, conv halving --

FUNCTIONS = {"relu": F.relu, "softplus": F.softplus, "tanh": torch.tanh, "elu": F.elu,
             "leaky_relu": F.leaky_relu, "gelu": F.gelu}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_mlp_applies_the_named_activation_after_every_linear_layer(name):
    torch.manual_seed(0)
    net = vae_nn.mlp([3, 5, 2], name)
    x = torch.randn(7, 3) * 3
    first, second = [m for m in net if isinstance(m, torch.nn.Linear)]
    want = FUNCTIONS[name](second(FUNCTIONS[name](first(x))))
    assert torch.allclose(net(x), want, atol=1e-6)
    assert len(net) == 4


def test_broadcast_cat_broadcasts_leading_dimensions_then_concatenates():
    a = torch.arange(6.0).reshape(2, 1, 3)
    b = torch.tensor([[10.0], [20.0], [30.0], [40.0]]).reshape(1, 4, 1)
    out = vae_nn.broadcast_cat(a, b)
    assert out.shape == (2, 4, 4)
    assert torch.equal(out[1, 2], torch.tensor([3.0, 4.0, 5.0, 30.0]))


def test_classifier_maps_images_with_any_leading_dimensions_to_logits():
    torch.manual_seed(0)
    net = vae_nn.classifier((1, 2, 2), [6], 3, "tanh")
    x = torch.rand(5, 4, 1, 2, 2)
    out = net(x)
    assert out.shape == (5, 4, 3)
    assert torch.allclose(out[2, 1], net(x[2, 1:2])[0], atol=1e-6)
    first, head = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert torch.allclose(out[0, 0], head(torch.tanh(first(x[0, 0].reshape(4)))), atol=1e-6)


def test_mlp_bodies_read_pixels_and_extra_inputs_and_decode_to_the_image_shape():
    body, features = vae_nn.mlp_encoder_body((1, 2, 3), [8, 5], "relu", extra_inputs=2)
    assert features == 5 and body(torch.rand(4, 8)).shape == (4, 5)
    decoder = vae_nn.Decoder(vae_nn.mlp_decoder_body((1, 2, 3), 4, [8, 5], "relu"), (1, 2, 3))
    assert decoder(torch.randn(3, 2, 4)).shape == (3, 2, 1, 2, 3)
    # The decoder mirrors the encoder's hidden sizes: 4 -> 5 -> 8 -> 6 pixels, linear at the end.
    sizes = [(m.in_features, m.out_features) for m in decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert sizes == [(4, 5), (5, 8), (8, 6)]
    assert (decoder(-10 * torch.ones(50, 4)) < 0).any()  # no activation after the last layer


@pytest.mark.parametrize("batch_norm", [False, True])
def test_conv_bodies_halve_the_image_once_per_channel_entry(batch_norm):
    body, features = vae_nn.conv_encoder_body((3, 16, 8), [4, 6], 10, "relu", batch_norm)
    x = torch.rand(2, 3, 16, 8)
    shapes = []
    for module in body:
        x = module(x)
        if isinstance(module, torch.nn.Conv2d):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(4, 8, 4), (6, 4, 2)] and features == 10 and x.shape == (2, 10)
    decoder = vae_nn.conv_decoder_body((3, 16, 8), 5, [4, 6], 10, "relu", batch_norm)
    assert decoder(torch.randn(2, 5)).shape == (2, 3, 16, 8)
    norms = [m for m in list(body) + list(decoder) if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == (3 if batch_norm else 0)  # after every convolution but the decoder's last


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 12, 16)])
def test_conv_bodies_refuse_sizes_they_cannot_halve_that_often(shape):
    with pytest.raises(ValueError, match="divisible by 8"):
        vae_nn.conv_encoder_body(shape, [4, 4, 4], 10, "relu")
    with pytest.raises(ValueError, match="divisible by 8"):
        vae_nn.conv_decoder_body(shape, 3, [4, 4, 4], 10, "relu")
    vae_nn.conv_encoder_body((1, 24, 16), [4, 4, 4], 10, "relu")  # divisible: accepted


def test_conv_bodies_have_no_batch_normalisation_unless_asked():
    body, _ = vae_nn.conv_encoder_body((1, 8, 8), [4], 10, "relu")
    decoder = vae_nn.conv_decoder_body((1, 8, 8), 3, [4, 4], 10, "relu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in list(body) + list(decoder))
    assert all(m.bias is not None for m in list(body) + list(decoder) if isinstance(m, torch.nn.Conv2d))


def test_mlp_defaults_to_relu():
    net = vae_nn.mlp([2, 3])
    assert isinstance(net[1], torch.nn.ReLU)


@pytest.mark.parametrize("at_input", [False, True])
def test_a_condition_joins_the_pixels_or_the_features_and_broadcasts_over_enumeration(at_input):
    torch.manual_seed(0)
    body = vae_nn.mlp([4 + (2 if at_input else 0), 3], "tanh")
    encoder = vae_nn.Encoder(body if at_input else torch.nn.Sequential(torch.nn.Flatten(), body), 3, 2,
                             condition_dim=2, condition_at_input=at_input)
    x, y = torch.rand(5, 1, 2, 2), torch.eye(2)[torch.tensor([0, 1, 1, 0, 1])]
    loc, scale = encoder(x, y)
    if at_input:
        h = body(torch.cat([x.reshape(5, 4), y], -1))
    else:
        h = torch.cat([body(x.reshape(5, 4)), y], -1)
    assert torch.allclose(loc, encoder.loc(h), atol=1e-6)
    assert torch.allclose(scale, F.softplus(encoder.raw_scale(h)) + 1e-3, atol=1e-6)
    # Pyro's enumeration of y puts the classes in a dimension of their own, left of the batch.
    every_class = torch.eye(2).reshape(2, 1, 2)
    loc_all, _ = encoder(x, every_class)
    assert loc_all.shape == (2, 5, 2)
    assert torch.allclose(loc_all[1], encoder(x, torch.eye(2)[[1] * 5])[0], atol=1e-6)


@pytest.mark.parametrize("settings", [dict(), dict(model="ae"), dict(flow="iaf", flow_steps=2),
                                      dict(prior="vamp", pseudo_inputs=3), dict(prior="mog", prior_components=3),
                                      dict(model="hvae")],
                         ids=["vae", "ae", "iaf-guide", "vampprior", "mog-prior", "hvae"])
def test_pyros_trace_elbo_finds_the_same_plates_in_model_and_guide(settings):
    # Pyro's ELBOs compare the plates of model and guide, subsample sites included, and warn
    # of a mismatch; a guide in a pyro.plate beside a model in a FullPlate was one (#16's plates).
    import warnings

    from pyro.infer import Trace_ELBO

    model, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[16], **settings), (1, 28, 28))
    x = torch.bernoulli(torch.rand(4, 1, 28, 28))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*plate statements.*")
        Trace_ELBO().differentiable_loss(model, guide, x)
