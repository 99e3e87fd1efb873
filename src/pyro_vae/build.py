"""Build a (model, guide) pair from a :class:`~pyro_vae.config.ModelConfig`."""

from __future__ import annotations

from pyro_vae import nn as vae_nn
from pyro_vae.config import ModelConfig
from pyro_vae.errors import ConfigError
from pyro_vae.guides import DiagonalNormalGuide
from pyro_vae.likelihoods import make_likelihood
from pyro_vae.models import VAEModel


def build_vae(config: ModelConfig, image_shape: tuple[int, int, int]) -> tuple[VAEModel, DiagonalNormalGuide]:
    """The VAE model p(x, z) and its guide q(z | x) for images of ``image_shape`` ``(C, H, W)``."""
    latent, act = config.latent_dim, config.activation
    try:
        if config.network == "mlp":
            enc_body, features = vae_nn.mlp_encoder_body(image_shape, config.hidden_dims, act)
            dec_body = vae_nn.mlp_decoder_body(image_shape, latent, config.hidden_dims, act)
        else:
            hidden = config.hidden_dims[0]
            enc_body, features = vae_nn.conv_encoder_body(image_shape, config.conv_channels, hidden, act)
            dec_body = vae_nn.conv_decoder_body(image_shape, latent, config.conv_channels, hidden, act)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    encoder = vae_nn.Encoder(enc_body, features, latent, config.scale_transform, config.min_scale)
    decoder = vae_nn.Decoder(dec_body, image_shape)
    likelihood = make_likelihood(config.likelihood, image_shape, config.likelihood_scale)
    return VAEModel(decoder, likelihood, latent), DiagonalNormalGuide(encoder)
