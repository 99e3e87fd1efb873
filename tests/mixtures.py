"""A random diagonal-Normal mixture and draws near its components, for the mixture-density tests."""

import math

import torch


def random_mixture_and_draws(seed: int, *, loc_spread: float, scales: tuple[float, float], noise: float,
                             components: int = 7, latent: int = 5):
    """``(logits [K], loc [K, L], scale [K, L], z [3, 4, L])``: locations N(0, loc_spread^2),
    scales log-uniform in ``scales``, and each draw a random component's location plus
    N(0, noise^2) per dimension (so its density has terms of order (noise / scale)^2)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(components, generator=generator)
    loc = loc_spread * torch.randn(components, latent, generator=generator)
    low, high = math.log(scales[0]), math.log(scales[1])
    scale = torch.exp(torch.empty(components, latent).uniform_(low, high, generator=generator))
    z = loc[torch.randint(components, (3, 4), generator=generator)] + noise * torch.randn(3, 4, latent, generator=generator)
    return logits, loc, scale, z
