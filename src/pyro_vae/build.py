"""Build a (model, guide) pair from a :class:`~pyro_vae.config.ModelConfig`."""

from __future__ import annotations

import dataclasses
import math

import torch

from pyro_vae import nn as vae_nn
from pyro_vae.config import ModelConfig
from pyro_vae.counts import is_whole_number
from pyro_vae.errors import ConfigError
from pyro_vae.guides import (ADGMGuide, ConditionalNormalGuide, DiagonalNormalGuide, M2Guide, PointMassGuide,
                              TwoLayerGuide)
from pyro_vae.guides.flows import FlowGuide, make_flow_steps
from pyro_vae.likelihoods import LIKELIHOODS, make_likelihood
from pyro_vae.models import ADGMModel, AEModel, CVAEModel, M2Model, QuadrantCVAEModel, TwoLayerVAEModel, VAEModel
from pyro_vae.models.priors import make_prior
from pyro_vae.models.quadrant import quadrant_mask


def _m2_classifier(config: ModelConfig, image_shape: tuple[int, ...], num_classes: int):
    """M2's q(y | x) network: an MLP of ``hidden_dims``, or with ``classifier_network = "conv"``
    the conv encoder's convolutions and one dense layer of ``hidden_dims[0]``; ``[..., C, H, W]``
    images -> ``[..., num_classes]`` logits."""
    if config.classifier_network == "mlp":
        return vae_nn.classifier(image_shape, config.hidden_dims, num_classes, config.activation)
    try:
        return vae_nn.conv_classifier(image_shape, config.conv_channels, config.hidden_dims[0], num_classes,
                                      config.activation, config.batch_norm)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _encoder_body(config: ModelConfig, image_shape, extra_inputs: int = 0):
    if config.network == "mlp":
        return vae_nn.mlp_encoder_body(image_shape, config.hidden_dims, config.activation, extra_inputs)
    return vae_nn.conv_encoder_body(image_shape, config.conv_channels, config.hidden_dims[0], config.activation,
                                    config.batch_norm)


def _likelihood(config: ModelConfig, image_shape):
    """The config's likelihood, given ``likelihood_scale`` where it has a sigma (a saved run's
    config may hold one for a Bernoulli likelihood, which has none)."""
    uses_scale = LIKELIHOODS[config.likelihood].uses_scale
    return make_likelihood(config.likelihood, image_shape, config.likelihood_scale if uses_scale else None)


def _check_model_options_take_effect(config: ModelConfig) -> None:
    """The CLI's refusal of a [model] option of no effect (:func:`~pyro_vae.config.ineffective_options`),
    worded with the ModelConfig's field names rather than its flags: ``ModelConfig(likelihood_scale=0.5)``
    built a Bernoulli model without it."""
    import re

    from pyro_vae.config import Config, _check_starting_scale, ineffective_options

    for key, sentence in ineffective_options(Config(model=config)):
        if key.startswith("model."):
            raise ConfigError("ModelConfig: " + re.sub(r"--([a-z0-9-]+)", lambda m: m[1].replace("-", "_"), sentence))
    _check_starting_scale(config)


def build_vae(config: ModelConfig, image_shape: tuple[int, int, int], num_classes: int = 0, *,
              check_effect: bool = True):
    """The model and its guide for images of ``image_shape`` ``(C, H, W)``: p(x, z) and
    q(z | x) for ``model = "vae"``; the plain autoencoder's p(x | z) and point-mass
    q(z | x) = delta(z - loc(x)) for ``"ae"`` (same networks); p(x, z | y) and q(z | x, y) for ``"cvae"`` (and M2),
    whose label y takes ``num_classes`` values; p(x_m, z | x_g) and q(z | x) for
    ``"quadrant"``, which completes the missing quadrants x_m from the given ones x_g;
    for ``"m1m2"`` the M2 pair on M1's codes, given as "images" ``(1, 1, D)``: a Gaussian
    likelihood with one learned sigma per code unit (starting at 1, the codes' standardized
    spread), see :mod:`pyro_vae.inference.codes`; for ``"adgm"`` M2's decoder with the
    auxiliary variable's p(a | x, y, z) and the guide q(a | x) q(y | a, x) q(z | a, y, x)
    (:func:`build_adgm`); for ``"hvae"`` the two-layer p(z2) p(z1 | z2) p(x | z1) and
    q(z1 | x) q(z2 | z1), the x <-> z1 networks the VAE's and the z1 <-> z2 ones MLPs of
    ``top_hidden_dims`` (mirrored in the model). ``config`` is checked as the CLI checks
    its flags (:meth:`ModelConfig.validate`): a misspelt model or likelihood, or a scale that
    is not positive, is a ConfigError, not another model or a NaN loss; with ``check_effect``
    so is a field set away from its default where it has no effect (``likelihood_scale`` with
    the Bernoulli likelihood, ``flow_steps`` without a flow, ...), as ``pyro-vae train`` refuses
    such a flag. A saved run's config is rebuilt as it ran, with ``check_effect=False``."""
    if not isinstance(config, ModelConfig):
        raise ConfigError(f"build_vae takes a ModelConfig (a Config's .model), not {type(config).__name__}.")
    config.validate()
    if check_effect:
        _check_model_options_take_effect(config)
        if num_classes and config.model not in ("cvae", "m2", "m1m2", "adgm"):
            raise ConfigError(f"num_classes={num_classes} has no effect with model '{config.model}', which has no "
                              "label; leave it out, or build a label model (cvae, m2, adgm).")
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list, torch.Size)) else ()
    if len(shape) != 3 or not all(is_whole_number(n) and n > 0 for n in shape):
        # (28, 28) failed as "not enough values to unpack (expected 3, got 2)"
        raise ConfigError(f"image_shape must be (C, H, W), three positive whole numbers (channels, height, width), "
                          f"e.g. (1, 28, 28) or a data set's .image_shape, not {image_shape!r}.")
    image_shape = tuple(map(int, shape))  # NumPy integers as Python's
    if config.model == "m1m2":
        config = dataclasses.replace(config, model="m2", likelihood="gaussian-learned-per-pixel", likelihood_scale=1.0)
    if config.model == "adgm":
        return build_adgm(config, image_shape, num_classes)
    conditional = config.model in ("cvae", "m2")
    if conditional and num_classes < 2:
        raise ConfigError(f"--model {config.model} needs labelled data with at least 2 classes.")
    condition = num_classes if conditional else 0
    latent = config.latent_dim
    decoder_inputs = latent + (math.prod(image_shape) if config.model == "quadrant" else condition)
    output_shape = LIKELIHOODS[config.likelihood].output_shape(image_shape)  # P maps per channel
    try:
        at_input = bool(condition) and config.network == "mlp" and config.label_at_encoder_input
        enc_body, features = _encoder_body(config, image_shape, condition if at_input else 0)
        if config.network == "mlp":
            dec_body = vae_nn.mlp_decoder_body(output_shape, decoder_inputs, config.hidden_dims, config.activation)
        else:
            dec_body = vae_nn.conv_decoder_body(output_shape, decoder_inputs, config.conv_channels,
                                                config.hidden_dims[0], config.activation, config.batch_norm)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    encoder = vae_nn.Encoder(enc_body, features, latent, config.scale_transform, config.min_scale, condition,
                             at_input)
    decoder = vae_nn.Decoder(dec_body, image_shape, output_shape)
    likelihood = _likelihood(config, image_shape)
    if config.model == "quadrant":
        if config.likelihood.endswith(("per-pixel", "per-channel")) or output_shape != tuple(image_shape):
            raise ConfigError("--model quadrant observes only the missing pixels, so it needs a likelihood with "
                              "one scale for all pixels (bernoulli, continuous-bernoulli, gaussian, gaussian-learned).")
        prior_body, prior_features = _encoder_body(config, image_shape)  # p(z | x_g) reads the given part
        prior_net = vae_nn.Encoder(prior_body, prior_features, latent, config.scale_transform, config.min_scale)
        given = quadrant_mask(image_shape, config.given_quadrants)
        return QuadrantCVAEModel(decoder, prior_net, likelihood, latent, given), DiagonalNormalGuide(encoder)
    if config.model == "m2":
        classify = _m2_classifier(config, image_shape, num_classes)
        return M2Model(decoder, likelihood, latent, num_classes), M2Guide(classify, encoder, num_classes)
    if conditional:
        return (CVAEModel(decoder, likelihood, latent, num_classes, config.conditional_prior),
                ConditionalNormalGuide(encoder, num_classes))
    if config.model == "ae":  # the same networks; a point-mass code and no prior
        return AEModel(decoder, likelihood, latent), PointMassGuide(encoder)
    if config.model == "hvae":  # z1 <-> z2 as in Burda et al. 2016: 100-100-50 up, 50-100-100 down
        top = config.top_latent_dim

        def gaussian_layer(fan_in: int, hidden: list[int], fan_out: int) -> vae_nn.LatentEncoder:
            return vae_nn.latent_encoder(fan_in, hidden, fan_out, config.activation, config.scale_transform,
                                         config.min_scale)

        model = TwoLayerVAEModel(gaussian_layer(top, list(reversed(config.top_hidden_dims)), latent), decoder,
                                 likelihood, latent, top)
        return model, TwoLayerGuide(encoder, gaussian_layer(latent, config.top_hidden_dims, top))
    if config.flow == "none":
        guide = DiagonalNormalGuide(encoder)
    else:
        guide = FlowGuide(encoder, make_flow_steps(config.flow, latent, features, config.flow_steps))
    prior = make_prior(config.prior, latent, components=config.prior_components, pseudo_inputs=config.pseudo_inputs,
                       encoder=guide.encoder, image_shape=image_shape)
    return VAEModel(decoder, likelihood, latent, prior), guide


def build_adgm(config: ModelConfig, image_shape: tuple[int, int, int], num_classes: int):
    """The ADGM pair (Maaløe et al. 2016) with MLPs of ``hidden_dims`` throughout: p(x | y, z)
    as M2's decoder; p(a | x, y, z) reads [pixels, onehot(y), z]; q(a | x) the pixels;
    q(y | a, x) [pixels, a]; q(z | a, y, x) [pixels, a, onehot(y)]. a has ``aux_dim`` units."""
    if num_classes < 2:
        raise ConfigError("--model adgm needs labelled data with at least 2 classes.")
    if config.network != "mlp":
        raise ConfigError("--model adgm is built from MLPs (as in Maaløe et al. 2016); drop --network conv.")
    latent, aux, hidden = config.latent_dim, config.aux_dim, config.hidden_dims
    output_shape = LIKELIHOODS[config.likelihood].output_shape(image_shape)

    def gaussian(extra_inputs: int, size: int) -> vae_nn.Encoder:  # pixels and extra inputs -> (loc, scale)
        body, features = vae_nn.mlp_encoder_body(image_shape, hidden, config.activation, extra_inputs)
        return vae_nn.Encoder(body, features, size, config.scale_transform, config.min_scale, extra_inputs,
                              condition_at_input=extra_inputs > 0)

    decoder = vae_nn.Decoder(vae_nn.mlp_decoder_body(output_shape, latent + num_classes, hidden, config.activation),
                             image_shape, output_shape)
    likelihood = _likelihood(config, image_shape)
    model = ADGMModel(decoder, gaussian(num_classes + latent, aux), likelihood, latent, num_classes, aux)
    classify = vae_nn.classifier(image_shape, hidden, num_classes, config.activation, extra_inputs=aux)
    guide = ADGMGuide(gaussian(0, aux), classify, gaussian(aux + num_classes, latent), num_classes)
    return model, guide
