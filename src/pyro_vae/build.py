"""Build a (model, guide) pair from a :class:`~pyro_vae.config.ModelConfig`."""

from __future__ import annotations

from pyro_vae import nn as vae_nn
from pyro_vae.config import ModelConfig
from pyro_vae.errors import ConfigError
from pyro_vae.guides import ConditionalNormalGuide, DiagonalNormalGuide, M2Guide
from pyro_vae.likelihoods import make_likelihood
from pyro_vae.models import CVAEModel, M2Model, VAEModel


def build_vae(config: ModelConfig, image_shape: tuple[int, int, int], num_classes: int = 0):
    """The model and its guide for images of ``image_shape`` ``(C, H, W)``: p(x, z) and
    q(z | x) for ``model = "vae"``; p(x, z | y) and q(z | x, y) for ``"cvae"``, whose
    label y takes ``num_classes`` values."""
    conditional = config.model in ("cvae", "m2")
    if conditional and num_classes < 2:
        raise ConfigError(f"--model {config.model} needs labelled data with at least 2 classes.")
    condition = num_classes if conditional else 0
    latent, act = config.latent_dim, config.activation
    try:
        if config.network == "mlp":
            enc_body, features = vae_nn.mlp_encoder_body(image_shape, config.hidden_dims, act)
            dec_body = vae_nn.mlp_decoder_body(image_shape, latent + condition, config.hidden_dims, act)
        else:
            hidden = config.hidden_dims[0]
            enc_body, features = vae_nn.conv_encoder_body(image_shape, config.conv_channels, hidden, act,
                                                          config.batch_norm)
            dec_body = vae_nn.conv_decoder_body(image_shape, latent + condition, config.conv_channels, hidden, act,
                                                config.batch_norm)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    encoder = vae_nn.Encoder(enc_body, features, latent, config.scale_transform, config.min_scale, condition)
    decoder = vae_nn.Decoder(dec_body, image_shape)
    likelihood = make_likelihood(config.likelihood, image_shape, config.likelihood_scale)
    if config.model == "m2":
        classify = vae_nn.classifier(image_shape, config.hidden_dims, num_classes, act)
        return M2Model(decoder, likelihood, latent, num_classes), M2Guide(classify, encoder, num_classes)
    if conditional:
        return (CVAEModel(decoder, likelihood, latent, num_classes, config.conditional_prior),
                ConditionalNormalGuide(encoder, num_classes))
    return VAEModel(decoder, likelihood, latent), DiagonalNormalGuide(encoder)
