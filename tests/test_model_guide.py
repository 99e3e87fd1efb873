"""The VAE model and guide as Pyro programs: sites, shapes, observed and latent."""

import pytest
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig


@pytest.mark.parametrize("network", ["mlp", "conv"])
@pytest.mark.parametrize("scale_transform", ["softplus", "exp"])
def test_traces_have_matching_sites_and_shapes(network, scale_transform):
    model, guide = build_vae(ModelConfig(network=network, latent_dim=7, hidden_dims=[32],
                                         conv_channels=[4, 8], scale_transform=scale_transform), (1, 28, 28))
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
