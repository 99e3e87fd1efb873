"""Quadrant completion on static binarized MNIST (Sohn et al. 2015): the conditional VAE
p(x_m | x_g) given 1, 2 or 3 quadrants, scored by the negative conditional log-likelihood
-log p(x_m | x_g) (importance sampling, K samples) on the 10,000 test images, beside a
deterministic network x_g -> Bernoulli means trained on the same data (Sohn et al.'s "NN").

    python benchmarks/quadrant.py [--epochs 20] [--k 1000] [--quadrants 1 2 3]

Runs land in runs/quadrant-<g>; results in benchmarks/results/quadrant.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import time

import torch
from torch.nn import functional as F

from common import ROOT, write_result
from pyro_vae.cli import main as cli
from pyro_vae.data.datasets import load_dataset
from pyro_vae.models.quadrant import quadrant_mask
from pyro_vae.nn import mlp

DATA = ROOT.parent / "shared" / "data"


def deterministic_baseline(data, given: torch.Tensor, epochs: int, hidden=(500, 500), seed: int = 0) -> dict:
    """x_g -> logits of the missing pixels, trained by cross-entropy with Adam; the best
    epoch by validation NCLL; returns test NCLL (nats per image)."""
    torch.manual_seed(seed)
    missing = ~given.flatten()
    net = torch.nn.Sequential(mlp([given.numel(), *hidden]), torch.nn.Linear(hidden[-1], int(missing.sum())))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)

    def ncll(images):
        with torch.no_grad():
            flat = images.flatten(1)
            logits = net(flat * given.flatten())
            return F.binary_cross_entropy_with_logits(logits, flat[:, missing], reduction="sum").item() / len(flat)

    best = (float("inf"), None)
    train = data.train.images
    for epoch in range(epochs):
        for rows in torch.randperm(len(train)).split(100):
            flat = train[rows].flatten(1)
            loss = F.binary_cross_entropy_with_logits(net(flat * given.flatten()), flat[:, missing],
                                                      reduction="sum") / len(rows)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        valid = ncll(data.valid.images)
        if valid < best[0]:
            best = (valid, ncll(data.test.images), epoch + 1)
    return {"valid_ncll": best[0], "test_ncll": best[1], "best_epoch": best[2]}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--quadrants", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("binarized-mnist", str(DATA))
    rows = []
    for given_count in args.quadrants:
        run = ROOT / "runs" / f"quadrant-{given_count}"
        shutil.rmtree(run, ignore_errors=True)
        command = ["train", "--model", "quadrant", "--given-quadrants", str(given_count), "--dataset",
                   "binarized-mnist", "--data-dir", str(DATA), "--latent-dim", "32", "--hidden-dims", "500,500",
                   "--epochs", str(args.epochs), "--run-dir", str(run)]
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli(command) == 0
            train_seconds = time.perf_counter() - start
            assert cli(["evaluate", str(run), "--k", str(args.k)]) == 0
            assert cli(["evaluate", str(run)]) == 0
        loglik = json.loads((run / "loglik.json").read_text())
        elbo = json.loads((run / "evaluation.json").read_text())
        baseline = deterministic_baseline(data, quadrant_mask((1, 28, 28), given_count), args.epochs)
        rows.append({"given_quadrants": given_count,
                     "command": "pyro-vae " + " ".join(command).replace(str(ROOT) + "/", "").replace(str(ROOT.parent), ".."),
                     "cvae_test_ncll": -loglik["log_likelihood_mean"], "cvae_test_ncll_stderr": loglik["log_likelihood_stderr"],
                     "cvae_test_negative_elbo": -elbo["elbo"], "k": args.k, "ess_mean": loglik["ess_mean"],
                     "train_seconds": train_seconds, "nn_baseline": baseline})
        print(rows[-1], flush=True)
    write_result("quadrant", {"data": "static binarized MNIST, test split (10,000)", "unit": "nats per image",
                              "rows": rows})


if __name__ == "__main__":
    main()
