"""--activation gated: every MLP layer is h(x) * sigmoid(g(x)) (Dauphin et al. 2017)."""

import pytest
import torch

from pyro_vae import nn as vae_nn
from pyro_vae.config import Config
from pyro_vae.errors import ConfigError


def test_gated_mlp_is_the_product_of_a_linear_map_and_a_sigmoid_gate():
    torch.manual_seed(0)
    net = vae_nn.mlp([5, 4, 3], "gated")
    x = torch.randn(2, 5)
    first, second = net[0], net[1]
    hidden = (x @ first.h.weight.T + first.h.bias) * torch.sigmoid(x @ first.g.weight.T + first.g.bias)
    hand = (hidden @ second.h.weight.T + second.h.bias) * torch.sigmoid(hidden @ second.g.weight.T + second.g.bias)
    torch.testing.assert_close(net(x), hand)
    assert len(net) == 2  # no separate activation layers


def test_gated_is_refused_for_the_conv_network():
    config = Config()
    config.set("activation", "gated")
    config.set("network", "conv")
    with pytest.raises(ConfigError, match="gated"):
        config.validate()
