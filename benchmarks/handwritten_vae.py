"""A VAE trained on binarized MNIST by hand, as a PyTorch user writes it: the baseline of
`benchmarks/process.py`. It does the work `pyro-vae train` does for the same run, minus the
figures: read the three splits, train the 784-400-50 MLP VAE (analytic KL, fused Adam,
batch 128) for E epochs, the validation ELBO after every epoch with a checkpoint, and the
test ELBO at the end.

    python benchmarks/handwritten_vae.py DATA_DIR OUT_DIR [--epochs 3] [--train-limit N]
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def read_amat(path: Path) -> torch.Tensor:
    """An .amat(.gz) of 0/1 digits separated by single spaces, 784 a line -> [N, 1, 28, 28] uint8."""
    raw = np.frombuffer(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes(), np.uint8)
    digits = raw.reshape(-1, 1568)[:, ::2] - ord("0")
    return torch.from_numpy(digits.reshape(-1, 1, 28, 28).copy())


class VAE(nn.Module):
    def __init__(self, hidden=400, latent=50):
        super().__init__()
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU())
        self.loc, self.raw_scale = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 784))

    def elbo(self, x):
        """One-sample ELBO per example, KL in closed form (nats)."""
        h = self.enc(x)
        loc, scale = self.loc(h), F.softplus(self.raw_scale(h)) + 1e-3
        z = loc + scale * torch.randn_like(loc)
        log_px = -F.binary_cross_entropy_with_logits(self.dec(z), x.flatten(1), reduction="none").sum(-1)
        kl = 0.5 * (scale ** 2 + loc ** 2 - 1 - 2 * torch.log(scale)).sum(-1)
        return log_px - kl


@torch.no_grad()
def mean_elbo(vae, images, batch=1000):
    return torch.cat([vae.elbo(images[i:i + batch].float()) for i in range(0, len(images), batch)]).mean().item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-limit", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    splits = {s: read_amat(args.data_dir / f"binarized_mnist_{s}.amat.gz") for s in ("train", "valid", "test")}
    train = splits["train"][:args.train_limit or None]
    vae = VAE()
    optimizer = torch.optim.Adam(vae.parameters(), 1e-3, fused=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for epoch in range(args.epochs):
        start = time.perf_counter()
        order = torch.randperm(len(train))
        for i in range(0, len(train), 128):
            x = train[order[i:i + 128]].float()
            optimizer.zero_grad(set_to_none=True)
            (-vae.elbo(x).sum()).backward()
            optimizer.step()
        valid = mean_elbo(vae, splits["valid"])
        torch.save({"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1},
                   args.out_dir / "checkpoint.pt")
        print(f"epoch {epoch + 1}: valid ELBO {valid:.2f} ({time.perf_counter() - start:.1f} s)")
    print(f"test ELBO {mean_elbo(vae, splits['test']):.2f}")


if __name__ == "__main__":
    main()
