"""Signal-to-noise ratio of the guide's gradient under IWAE and DReG as K grows.

Rainforth et al. (2018) show that the IWAE bound's gradient for the inference network has
SNR = |E g| / sd(g) falling like 1/sqrt(K), while the model's rises like sqrt(K); the
doubly reparameterized gradient (Tucker et al. 2019) makes the guide's rise too. This
measures both on a linear-Gaussian VAE (z ~ N(0, I_5), x ~ N(W z + b, 0.5^2 I_20), a
linear diagonal-Normal guide), 400 independent gradients per K on one fixed batch of 4
data points after 1,500 Adam steps on the ELBO, and writes benchmarks/results/iwae_snr.json.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/iwae_snr.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pyro
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402

from pyro_vae import nn as vae_nn  # noqa: E402
from pyro_vae.guides import DiagonalNormalGuide  # noqa: E402
from pyro_vae.inference.objectives import make_objective  # noqa: E402
from pyro_vae.likelihoods import make_likelihood  # noqa: E402
from pyro_vae.models import VAEModel  # noqa: E402

L, D, REPEATS = 5, 20, 400


def build():
    torch.manual_seed(0)
    shape = (1, 1, D)
    decoder = vae_nn.Decoder(nn.Linear(L, D), shape)
    encoder = vae_nn.Encoder(nn.Flatten(), D, L)
    model = VAEModel(decoder, make_likelihood("gaussian", shape, 0.5), L)
    with torch.no_grad():
        x = model.decode_mean(torch.randn(4, L)) + 0.5 * torch.randn(4, *shape)
    return model, DiagonalNormalGuide(encoder), x


def fit(model, guide, x, steps: int = 1500) -> None:
    """Bring the guide near the posterior first (the regime Rainforth et al. analyse: far
    from it, the guide's expected gradient is large for every K)."""
    optimizer = torch.optim.Adam(list(model.parameters()) + list(guide.parameters()), lr=1e-2)
    objective = make_objective("elbo", num_particles=8)
    for _ in range(steps):
        optimizer.zero_grad()
        objective.differentiable_loss(model, guide, x).backward()
        optimizer.step()


def snr(draws: torch.Tensor) -> float:
    """Median over parameters of |mean| / sd across draws ``[R, P]``."""
    return (draws.mean(0).abs() / draws.std(0).clamp_min(1e-12)).median().item()


def main() -> None:
    model, guide, x = build()
    pyro.set_rng_seed(0)
    fit(model, guide, x)
    rows = []
    for k in (1, 10, 100, 1000):
        row = {"k": k}
        for name in ("iwae", "iwae-dreg"):
            objective = make_objective(name, k=k)
            pyro.set_rng_seed(1)
            enc, dec = [], []
            for _ in range(REPEATS):
                model.zero_grad(), guide.zero_grad()
                objective.differentiable_loss(model, guide, x).backward()
                enc.append(torch.cat([p.grad.flatten() for p in guide.parameters()]))
                dec.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
            row[f"{name}_guide_snr"] = snr(torch.stack(enc))
            row[f"{name}_model_snr"] = snr(torch.stack(dec))
        rows.append(row)
        print(row, flush=True)
    payload = {"command": "OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/iwae_snr.py", "machine": machine(),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "what": ("median over parameters of |mean| / sd of 400 gradients on one batch of 4 (linear-Gaussian VAE, "
                        "after 1,500 Adam steps on the ELBO)"),
               "rows": rows}
    (RESULTS / "iwae_snr.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
