"""The conditional VAE conditioned on part of the image: quadrant completion (Sohn et al. 2015).

The given quadrants x_g of an image condition the rest x_m:

.. math::

    p(x_m | x_g) = \\int p(x_m | z, x_g)\\, p(z | x_g)\\, dz,

with a prior network p(z | x_g) and the guide q(z | x) reading the whole image (which holds
x_g). Only the missing pixels are observed in the model, so the ELBO bounds, and the
importance-sampling estimator estimates, the conditional log-likelihood log p(x_m | x_g).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule

from pyro_vae.likelihoods import Likelihood
from pyro_vae.nn import broadcast_cat
from pyro_vae.pyro_modules import to_pyro_network_

#: The quadrants given, in this order: top-left, top-right, bottom-left. The bottom-right
#: quadrant is always to be completed. (pyro_vae.inference.kinds names them alike.)
QUADRANT_ORDER = ("top-left", "top-right", "bottom-left")


def quadrant_mask(image_shape: tuple[int, int, int], given: int) -> torch.Tensor:
    """Bool ``[C, H, W]``, true on the first ``given`` (1-3) quadrants of :data:`QUADRANT_ORDER`."""
    if not 1 <= given <= 3:
        raise ValueError(f"given_quadrants must be 1, 2 or 3, not {given}")
    c, h, w = image_shape
    mask = torch.zeros(c, h, w, dtype=torch.bool)
    for name in QUADRANT_ORDER[:given]:
        rows = slice(0, h // 2) if name.startswith("top") else slice(h // 2, h)
        cols = slice(0, w // 2) if name.endswith("left") else slice(w // 2, w)
        mask[:, rows, cols] = True
    return mask


class QuadrantCVAEModel(PyroModule):
    """p(x_m, z | x_g) = p(z | x_g) p(x_m | decoder([z, x_g])).

    ``x_g`` is the image with the missing pixels set to 0 (``[..., C, H, W]``). Sites inside
    ``pyro.plate("data", B)``: ``z`` ``[B, L]`` from the prior network, and ``x`` observed:
    the M missing pixels, shaped ``[B, 1, 1, M]`` so every likelihood with one scale for all
    pixels applies unchanged.
    """

    needs_labels = False

    def __init__(self, decoder: torch.nn.Module, prior_net: torch.nn.Module, likelihood: Likelihood,
                 latent_dim: int, given: torch.Tensor):
        super().__init__()
        to_pyro_network_(decoder)
        to_pyro_network_(prior_net)
        self.decoder = decoder
        self.prior_net = prior_net
        self.likelihood = likelihood
        self.latent_dim = latent_dim
        self.register_buffer("given", given)
        self.register_buffer("missing_index", torch.nonzero(~given.flatten()).flatten())

    def condition(self, x: torch.Tensor) -> torch.Tensor:
        """x_g: ``x`` with the pixels to complete set to 0."""
        return x * self.given.to(x.dtype)

    def missing(self, image: torch.Tensor) -> torch.Tensor:
        """The pixels to complete, ``[..., C, H, W]`` -> ``[..., 1, 1, M]``."""
        flat = image.flatten(-3)[..., self.missing_index]
        return flat.reshape(flat.shape[:-1] + (1, 1, flat.shape[-1]))

    def prior(self, condition: torch.Tensor) -> dist.TorchDistribution:
        loc, scale = self.prior_net(condition)
        return dist.Normal(loc, scale, validate_args=False).to_event(1)

    def decoder_output(self, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.decoder(broadcast_cat(z, condition.flatten(-3)))

    def forward(self, x: torch.Tensor) -> None:
        condition = self.condition(x)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(condition))
            output = self.missing(self.decoder_output(z, condition))
            pyro.sample("x", self.likelihood.distribution(output), obs=self.missing(x))

    @torch.no_grad()
    def complete(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` completions of each image ``[B, C, H, W]``: the given quadrants kept, the
        rest the decoder's mean under z ~ p(z | x_g) -> ``[n, B, C, H, W]``."""
        condition = self.condition(x)
        z = self.prior(condition).sample((n,))
        mean = self.likelihood.mean(self.decoder_output(z, condition))
        return torch.where(self.given, x, mean)
