"""Samples of several trained runs side by side: for each run, the decoder means at codes
z ~ N(0, I) and one draw x ~ p(x | z) at the same codes (the learned-sigma Gaussian's
draws are noisy where its means are smooth; a discretized likelihood's draws are 8-bit
images). Draws outside [0, 1] (a Gaussian's) are shown clipped.

    python benchmarks/likelihood_samples.py -o docs/figures/likelihood-samples.png RUN_DIR ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402

from pyro_vae.plots import _save, _show, image_grid  # noqa: E402
from pyro_vae.runs import open_run  # noqa: E402


@torch.no_grad()
def means_and_draws(run_dir: Path, n: int, seed: int) -> tuple[str, torch.Tensor, torch.Tensor]:
    run = open_run(run_dir, "best", "cpu")
    pyro.set_rng_seed(seed)
    z = torch.randn(n, run.model.latent_dim)
    output = run.model.decoder(z)
    distribution = run.model.likelihood.distribution(output)
    return run.config.model.likelihood, run.model.likelihood.mean(output), distribution.sample()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = [means_and_draws(run, args.n, args.seed) for run in args.runs]
    fig, axes = plt.subplots(len(rows), 2, figsize=(2 * 0.55 * args.n + 0.6, 1.0 * len(rows) + 0.6), squeeze=False)
    for (name, mean, draw), (left, right) in zip(rows, axes):
        _show(left, image_grid(mean, args.n), f"{name}: means")
        _show(right, image_grid(draw, args.n), f"{name}: draws x ~ p(x | z)")
        for ax in (left, right):
            ax.title.set_fontsize(10)
    fig.suptitle(f"Fashion-MNIST, the same MLP VAE per likelihood; the same {args.n} codes z ~ N(0, I) per row",
                 fontsize=11)
    fig.tight_layout()
    print(_save(fig, args.output))


if __name__ == "__main__":
    main()
