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


@torch.no_grad()
def sampled_code_log_likelihood(model, images: torch.Tensor, k: int = 1000, seed: int = 0,
                                batch_size: int = 20, prior=None) -> torch.Tensor:
    r"""How likely each image is under the decoder when codes are drawn as one samples them:

    .. math:: \log \frac{1}{K} \sum_{k=1}^K p(x \mid z_k), \quad z_k \sim N(0, I),

    per image of ``images`` ``[N, C, H, W]`` -> ``[N]``, nats. For a VAE this is an estimate of
    its log p(x) with the prior as the proposal (unbiased in p, a lower bound in expectation in
    log p; good for a code of a few dimensions, poor for many); for an autoencoder, which has no
    p(z), it is what its decoder is worth as a generator of N(0, I) codes. The same ``k`` draws
    (from ``seed``) serve every image. Given a learned ``prior`` (a mixture, the VampPrior:
    the model's ``latent_prior``), z_k ~ that prior instead: N(0, I) is not its p(z), and the
    number would be no estimate of the model's log p(x)."""
    if prior is None:
        z = torch.randn(k, model.latent_dim, generator=torch.Generator().manual_seed(seed)).to(images.device)
    else:
        with torch.random.fork_rng(devices=[images.device] if images.device.type == "cuda" else []):
            torch.manual_seed(seed)
            z = prior.sample(k, torch.zeros((), device=images.device))
    output = model.decoder(z)                                      # [K, C, H, W]
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        per_draw = model.likelihood.distribution(output.unsqueeze(1)).log_prob(x.unsqueeze(0))   # [K, B]
        out.append(torch.logsumexp(per_draw, 0) - torch.log(torch.tensor(float(k))))
    return torch.cat(out)
