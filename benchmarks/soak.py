"""Soak: many short train-save-resume cycles and many evaluations on random valid and
invalid inputs; resident memory at the start and the end; every run directory checked.

    python benchmarks/soak.py [--cycles 200] [--evaluations 1000]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import git_commit, write_result
from pyro_vae.build import build_vae
from pyro_vae.config import Config, ModelConfig
from pyro_vae.errors import PyroVAEError
from pyro_vae.inference.checkpoint import LAST, load_checkpoint
from pyro_vae.inference.loglik import importance_log_likelihood
from pyro_vae.runs import open_run, train_run


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def tiny_data(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("train", 300), ("t10k", 60)):
        images = (rng.random((n, 28, 28)) < 0.2) * 255
        write_idx(folder / f"{name}-images-idx3-ubyte.gz", images)


WARMUP_CYCLES = 20


def check_run(run: Path, epochs: int) -> None:
    state = load_checkpoint(run / LAST)
    assert state["epoch"] == epochs, (state["epoch"], epochs)
    assert len((run / "metrics.csv").read_text().splitlines()) == epochs + 1
    assert not list(run.glob(".*.tmp*")), "temporary files left behind"
    open_run(run)  # config, best checkpoint and model agree


def soak_cycles(cycles: int, workdir: Path) -> dict:
    data = workdir / "data"
    data.mkdir()
    tiny_data(data)
    config = Config()
    config.data.dataset, config.data.data_dir, config.data.binarize = "idx", str(data), "none"
    config.model.latent_dim, config.model.hidden_dims = 2, [16]
    config.train.epochs, config.train.batch_size = 1, 100
    run = workdir / "run"
    quiet = lambda message: None  # noqa: E731
    train_run(config.validate(), run, progress=False, log=quiet)
    start_rss, started = None, time.perf_counter()
    for cycle in range(2, cycles + 1):
        if cycle == WARMUP_CYCLES:  # allocator pools and matplotlib caches fill in the first cycles
            start_rss = rss_mib()
        train_run(None, run, resume=True, overrides=_with_epochs(run, cycle), progress=False, log=quiet)
        if cycle % 20 == 0:
            check_run(run, cycle)
    check_run(run, cycles)
    return {"cycles": cycles, "rss_mib_start": start_rss, "rss_mib_end": rss_mib(),
            "seconds": time.perf_counter() - started, "run_directory_ok": True}


def _with_epochs(run: Path, epochs: int) -> Config:
    config = Config.load(run / "config.toml")
    config.train.epochs = epochs
    return config


def soak_evaluations(evaluations: int) -> dict:
    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=4, hidden_dims=[32]), (1, 28, 28))
    rng = np.random.default_rng(1)
    outcomes = {"valid": 0, "refused": 0}
    bad_inputs = [
        lambda n: torch.full((n, 1, 28, 28), 0.5),                     # grey pixels, Bernoulli model
        lambda n: torch.full((n, 1, 28, 28), float("nan")),            # NaN
        lambda n: torch.zeros(n, 1, 14, 14),                           # wrong shape
        lambda n: torch.zeros(0, 1, 28, 28),                           # empty
        lambda n: torch.zeros(n, 1, 28, 28, dtype=torch.long),         # wrong dtype
    ]
    start_rss, started = None, time.perf_counter()
    for i in range(evaluations):
        if i == 20:
            start_rss = rss_mib()
        n, k = int(rng.integers(1, 20)), int(rng.integers(1, 50))
        if rng.random() < 0.5:
            x = torch.bernoulli(torch.full((n, 1, 28, 28), float(rng.uniform(0.05, 0.5))))
            estimate = importance_log_likelihood(model, guide, x, k=k)
            assert torch.isfinite(estimate.log_likelihood).all() and estimate.log_likelihood.numel() == n
            outcomes["valid"] += 1
        else:
            bad = bad_inputs[int(rng.integers(len(bad_inputs)))](n)
            try:
                importance_log_likelihood(model, guide, bad, k=k if rng.random() < 0.8 else 0)
            except PyroVAEError:
                outcomes["refused"] += 1
            else:
                raise AssertionError("invalid input was accepted")
    return {"evaluations": evaluations, **outcomes, "rss_mib_start": start_rss, "rss_mib_end": rss_mib(),
            "seconds": time.perf_counter() - started}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--evaluations", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp(prefix="pyro-vae-soak-"))
    try:
        cycles = soak_cycles(args.cycles, workdir)
        print(f"{cycles['cycles']} train-save-resume cycles: RSS after {WARMUP_CYCLES} {cycles['rss_mib_start']:.0f} -> "
              f"{cycles['rss_mib_end']:.0f} MiB, {cycles['seconds']:.0f} s, run directory intact")
        evals = soak_evaluations(args.evaluations)
        print(f"{evals['evaluations']} evaluations ({evals['valid']} valid, {evals['refused']} refused): RSS "
              f"{evals['rss_mib_start']:.0f} -> {evals['rss_mib_end']:.0f} MiB, {evals['seconds']:.0f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(write_result("soak", {"commit": git_commit(), "cycles": cycles, "evaluations": evals}))


if __name__ == "__main__":
    main()
