"""How well a model reconstructs: the decoder's likelihood of each image at its own code.

The one number an autoencoder and a VAE share: an autoencoder has no ELBO and no log p(x),
but both have log p(x | z = code(x)), with the code the encoder's mean (a VAE's) or its point
mass (an autoencoder's). It measures reconstruction, not generation.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def reconstruction_log_likelihood(model, guide, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """log p(x | z = code(x)) for each image of ``images`` ``[N, C, H, W]`` -> ``[N]``, nats per
    image; ``guide.encode(x)[0]`` is the code and ``model.likelihood`` the observation model."""
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        code = guide.encode(x)[0]
        out.append(model.likelihood.distribution(model.decoder(code)).log_prob(x))
    return torch.cat(out)
