"""Plain torch building blocks: MLP and convolutional encoder/decoder bodies.

Shapes: images are ``[..., C, H, W]`` and latents ``[..., L]``; every network accepts
any number of leading batch dimensions (Pyro adds one for vectorized particles and
importance samples) and returns outputs with the same leading dimensions.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}


class GatedDense(nn.Module):
    """h(x) * sigmoid(g(x)) with two linear maps h and g ``[..., fan_in] -> [..., fan_out]``:
    the gated units of Dauphin et al. (2017) used by Tomczak & Welling's VampPrior networks."""

    def __init__(self, fan_in: int, fan_out: int):
        super().__init__()
        self.h = nn.Linear(fan_in, fan_out)
        self.g = nn.Linear(fan_in, fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


#: Activations that are whole layers (MLP only): a hidden layer of this kind replaces Linear + activation.
LAYER_ACTIVATIONS = {"gated": GatedDense}


def mlp(sizes: list[int], activation: str = "relu") -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between them
    and after the last one (the heads that follow are linear); ``"gated"`` makes every
    layer a :class:`GatedDense`."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        if activation in LAYER_ACTIVATIONS:
            layers.append(LAYER_ACTIVATIONS[activation](fan_in, fan_out))
        else:
            layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


def broadcast_cat(*tensors: torch.Tensor) -> torch.Tensor:
    """Concatenate along the last dimension after broadcasting all the other dimensions."""
    batch = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(batch + t.shape[-1:]) for t in tensors], -1)


def classifier(image_shape, hidden_dims, num_classes: int, activation: str = "relu",
               extra_inputs: int = 0) -> nn.Module:
    """An MLP from images ``[..., C, H, W]`` (and ``extra_inputs`` more values ``[..., E]``
    read with the pixels, e.g. the ADGM's auxiliary variable) to class logits ``[..., num_classes]``."""
    return _Classifier(nn.Sequential(mlp([math.prod(image_shape) + extra_inputs] + list(hidden_dims), activation),
                                     nn.Linear(hidden_dims[-1], num_classes)))


class _Classifier(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for images ``x`` ``[..., C, H, W]``; ``extra`` ``[..., E]`` joins the
        flattened pixels, the leading dimensions of the two broadcasting."""
        flat = x.flatten(-3) if extra is None else broadcast_cat(x.flatten(-3), extra.to(x.dtype))
        return self.body(flat.reshape(-1, flat.shape[-1])).reshape(flat.shape[:-1] + (-1,))


def conv_classifier(image_shape, channels, hidden_dim: int, num_classes: int, activation: str = "relu",
                    batch_norm: bool = False) -> nn.Module:
    """The conv encoder's body (:func:`conv_encoder_body`) then a linear layer: images
    ``[..., C, H, W]`` -> class logits ``[..., num_classes]``."""
    body, features = conv_encoder_body(image_shape, channels, hidden_dim, activation, batch_norm)
    return _ConvClassifier(nn.Sequential(body, nn.Linear(features, num_classes)))


class _LeadingDims(nn.Module):
    """Applies ``body`` to the trailing ``event_dims`` dimensions of its input."""

    event_dims: int

    def flat(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
        lead = x.shape[: x.dim() - self.event_dims]
        return x.reshape((-1,) + x.shape[x.dim() - self.event_dims :]), lead


class _ConvClassifier(_LeadingDims):
    event_dims = 3

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        if extra is not None:  # the ADGM's q(y | a, x) reads a with the pixels: an MLP's input
            raise ValueError("a conv classifier reads images only; give extra inputs to an MLP classifier.")
        flat, lead = self.flat(x)
        return self.body(flat).reshape(lead + (-1,))


class Encoder(_LeadingDims):
    """x ``[..., C, H, W]`` -> (loc ``[..., L]``, scale ``[..., L]``), scale > ``min_scale``.

    ``scale_transform`` is ``softplus`` (scale = softplus(h) + floor) or ``exp``
    (h is a log-variance: scale = exp(h / 2) + floor); the floor keeps q(z|x) proper.
    """

    event_dims = 3

    def __init__(self, body: nn.Module, feature_dim: int, latent_dim: int,
                 scale_transform: str = "softplus", min_scale: float = 1e-3, condition_dim: int = 0,
                 condition_at_input: bool = False):
        super().__init__()
        self.body = body
        heads_in = feature_dim + (0 if condition_at_input else condition_dim)
        self.loc = nn.Linear(heads_in, latent_dim)
        self.raw_scale = nn.Linear(heads_in, latent_dim)
        self.scale_transform = scale_transform
        self.min_scale = min_scale
        self.condition_at_input = condition_at_input

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``condition`` ``[..., D]`` (a one-hot label, say) joins the features before the
        heads, or with ``condition_at_input`` the flattened pixels before an MLP body; its
        leading dimensions broadcast against those of ``x`` (Pyro's enumeration of a label
        puts the classes in a dimension of their own)."""
        return self.heads(self.features(x, condition))

    def features(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """The features ``[..., F]`` the two heads read (a flow guide's context too)."""
        if condition is not None and self.condition_at_input:  # an MLP body reading [pixels, condition]
            joined = broadcast_cat(x.flatten(-3), condition.to(x.dtype))
            return self.body(joined.reshape(-1, joined.shape[-1])).reshape(joined.shape[:-1] + (-1,))
        flat, lead = self.flat(x)
        h = self.body(flat).reshape(lead + (-1,))
        if condition is not None:
            h = broadcast_cat(h, condition.to(h.dtype))
        return h

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[..., F]`` -> (loc, scale) ``[..., L]``."""
        raw = self.raw_scale(h)
        if self.scale_transform == "exp":
            scale = torch.exp(0.5 * raw.clamp(max=30.0)) + self.min_scale
        else:
            scale = F.softplus(raw) + self.min_scale
        return self.loc(h), scale


class LatentEncoder(Encoder):
    """A Gaussian layer on a vector: h ``[..., D]`` -> (loc ``[..., L]``, scale ``[..., L]``),
    scale > ``min_scale``, with :class:`Encoder`'s heads on an MLP ``body`` (``[N, D] -> [N, F]``).
    The two-layer VAE's q(z2 | z1) and p(z1 | z2) (:func:`latent_encoder`)."""

    event_dims = 1


def latent_encoder(in_dim: int, hidden_dims, out_dim: int, activation: str, scale_transform: str = "softplus",
                   min_scale: float = 1e-3) -> LatentEncoder:
    """``in_dim -> hidden_dims -> (loc, scale) [out_dim]``, ``activation`` after every hidden layer."""
    sizes = [in_dim] + list(hidden_dims)
    return LatentEncoder(mlp(sizes, activation), sizes[-1], out_dim, scale_transform, min_scale)


class Decoder(_LeadingDims):
    """z ``[..., L]`` -> decoder output ``[..., P * C, H, W]`` (logits or means, by likelihood;
    ``output_shape`` is ``image_shape`` unless the likelihood reads P > 1 maps per channel)."""

    event_dims = 1

    def __init__(self, body: nn.Module, image_shape: tuple[int, int, int],
                 output_shape: tuple[int, int, int] | None = None):
        super().__init__()
        self.body = body
        self.image_shape = tuple(image_shape)
        self.output_shape = tuple(output_shape or image_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        flat, lead = self.flat(z)
        return self.body(flat).reshape(lead + self.output_shape)


def mlp_encoder_body(image_shape, hidden_dims, activation, extra_inputs: int = 0) -> tuple[nn.Module, int]:
    """Flattened pixels (and ``extra_inputs`` more values, a label say) -> features."""
    sizes = [math.prod(image_shape) + extra_inputs] + list(hidden_dims)
    return nn.Sequential(nn.Flatten(), mlp(sizes, activation)), sizes[-1]


def mlp_decoder_body(image_shape, latent_dim, hidden_dims, activation) -> nn.Module:
    sizes = [latent_dim] + list(reversed(hidden_dims))
    return nn.Sequential(mlp(sizes, activation), nn.Linear(sizes[-1], math.prod(image_shape)))


def _check_conv_shape(image_shape, channels) -> tuple[int, int]:
    c, h, w = image_shape
    factor = 2 ** len(channels)
    if h % factor or w % factor:
        raise ValueError(
            f"the conv network halves the image {len(channels)} times, so height and width "
            f"must be divisible by {factor}; {h}x{w} is not (use fewer conv_channels)."
        )
    return h // factor, w // factor


def _norm(channels: int, batch_norm: bool) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels)] if batch_norm else []


def conv_encoder_body(image_shape, channels, hidden_dim, activation, batch_norm: bool = False) -> tuple[nn.Module, int]:
    """Stride-2 4x4 convolutions, each halving height and width (each followed by batch
    normalisation if asked), then a linear layer: 64 x 64 with four channels entries ends
    at 4 x 4. Batch statistics are the training batch's; evaluation (``.eval()``) uses the
    running averages, so an example's score never depends on its batch."""
    h, w = _check_conv_shape(image_shape, channels)
    layers: list[nn.Module] = []
    fan_in = image_shape[0]
    for fan_out in channels:
        layers += [nn.Conv2d(fan_in, fan_out, 4, stride=2, padding=1, bias=not batch_norm),
                   *_norm(fan_out, batch_norm), ACTIVATIONS[activation]()]
        fan_in = fan_out
    layers += [nn.Flatten(), nn.Linear(fan_in * h * w, hidden_dim), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers), hidden_dim


def conv_decoder_body(image_shape, latent_dim, channels, hidden_dim, activation, batch_norm: bool = False) -> nn.Module:
    """The encoder's mirror: linear layers, then stride-2 transposed convolutions (the last
    one, to the image's channels, without normalisation or activation)."""
    h, w = _check_conv_shape(image_shape, channels)
    rev = list(reversed(channels))
    layers: list[nn.Module] = [
        nn.Linear(latent_dim, hidden_dim), ACTIVATIONS[activation](),
        nn.Linear(hidden_dim, rev[0] * h * w), ACTIVATIONS[activation](),
        nn.Unflatten(1, (rev[0], h, w)),
    ]
    for fan_in, fan_out in zip(rev[:-1], rev[1:]):
        layers += [nn.ConvTranspose2d(fan_in, fan_out, 4, stride=2, padding=1, bias=not batch_norm),
                   *_norm(fan_out, batch_norm), ACTIVATIONS[activation]()]
    layers += [nn.ConvTranspose2d(rev[-1], image_shape[0], 4, stride=2, padding=1)]
    return nn.Sequential(*layers)
