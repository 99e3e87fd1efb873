"""Figures from a trained model: prior samples and reconstructions as image grids.

Every function takes tensors or a (model, guide) pair and a path, draws with
matplotlib's non-interactive Agg backend, and writes a PNG (or PDF, by the suffix).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def image_grid(images: torch.Tensor, ncol: int, pad: int = 1) -> torch.Tensor:
    """Tile ``images`` ``[N, C, H, W]`` (values in [0, 1]) into one ``[H', W', C]`` array."""
    images = images.detach().float().cpu().clamp(0, 1)
    n, c, h, w = images.shape
    nrow = math.ceil(n / ncol)
    grid = torch.ones(c, nrow * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid.permute(1, 2, 0)


def _show(ax, grid: torch.Tensor, title: str) -> None:
    if grid.shape[-1] == 1:
        ax.imshow(grid[..., 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid.numpy(), interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])


def _save(fig, path: Path) -> Path:
    """Write the figure to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


@torch.no_grad()
def plot_samples(model, path: Path, n: int = 64, device="cpu", title: str | None = None) -> Path:
    """A grid of E[x | z] for ``n`` draws z ~ p(z) = N(0, I)."""
    z = torch.randn(n, model.latent_dim, device=device)
    images = model.decode_mean(z)
    ncol = math.ceil(math.sqrt(n))
    fig, ax = plt.subplots(figsize=(6, 6 * math.ceil(n / ncol) / ncol + 0.4))
    _show(ax, image_grid(images, ncol), title or f"{n} samples from the prior (decoder means)")
    return _save(fig, path)


@torch.no_grad()
def plot_reconstructions(model, guide, images: torch.Tensor, path: Path, title: str | None = None) -> Path:
    """Inputs (left) beside E[x | z = loc(x)] (right), one pair per row block."""
    loc, _ = guide.encode(images)
    recon = model.decode_mean(loc)
    n = len(images)
    ncol = min(8, n)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4 * math.ceil(n / ncol) / ncol + 0.6))
    _show(axes[0], image_grid(images, ncol), "inputs")
    _show(axes[1], image_grid(recon, ncol), "reconstructions (decoder mean at the code)")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
