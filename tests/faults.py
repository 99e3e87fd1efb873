"""Fault injection shared by tests/test_reliability.py and benchmarks/fault_injection.py:
kill a process at a chosen write, and compare what two run directories hold.

A run's outcome is everything in it except wall-clock times: the last and best
checkpoints (every tensor, number and string), the metrics rows, summary.json and
config.toml, and which files exist. Two runs "end equal" when these are equal bit for bit.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import tomllib
from pathlib import Path

import torch

from pyro_vae.errors import PyroVAEError
from pyro_vae.inference.checkpoint import BEST, LAST, load_checkpoint

#: Wall-clock fields: they differ between any two runs, interrupted or not.
TIMING_KEYS = {"seconds", "cpu_seconds", "train_seconds_this_session", "seconds_per_epoch"}
#: Written by `pyro-vae evaluate`, not by training.
EVALUATIONS = ("loglik.json", "evaluation.json")


def interrupt_at_step(monkeypatch, step: int):
    """From now on, SIGINT this process when the trainer draws the noise of step ``step`` (0-based,
    counted over the run), as Ctrl-C there would; returns a function that stops doing so."""
    from pyro_vae.inference.train import Trainer

    real = Trainer.global_noise

    def global_noise(self, size):
        if self.state.step == step:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, size)

    monkeypatch.setattr(Trainer, "global_noise", global_noise)
    return lambda: monkeypatch.setattr(Trainer, "global_noise", real)


def kill_at_write(target: str, nth: int, phase: str) -> None:
    """From now on, SIGKILL this process at the ``nth`` atomic write of a file named
    ``target`` (every run file is written as a temporary file, then ``os.replace``d):
    ``phase`` "before" the rename (the temporary file is whole, the old file in place) or
    "after" it (the new file in place, nothing after it written)."""
    real_replace, seen = os.replace, {"count": 0}

    def replace(src, dst, **kwargs):
        if Path(dst).name == target:
            seen["count"] += 1
        hit = Path(dst).name == target and seen["count"] == nth
        if hit and phase == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, **kwargs)
        if hit and phase == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace


def _flatten(tree, prefix="") -> dict:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            if key not in TIMING_KEYS:
                out.update(_flatten(value, f"{prefix}/{key}"))
        return out
    if isinstance(tree, (list, tuple)):
        return _flatten(dict(enumerate(tree)), prefix)
    return {prefix: tree}


def _same(a, b) -> bool:
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape \
            and torch.equal(a, b)
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:  # NaN
        return True
    return type(a) is type(b) and a == b


def run_outcome(run: Path) -> dict:
    """Everything the run directory ``run`` holds that must not depend on interruptions,
    flattened to ``{"file/key/...": value}``; run-dependent paths reduced to file names."""
    run = Path(run)
    out: dict = {"files": tuple(sorted(p.name for p in run.iterdir()
                                       if not p.name.startswith(".") and p.name not in EVALUATIONS
                                       and not p.name.endswith("_examples.npz")))}
    for name in (LAST, BEST):
        if (run / name).exists():
            out.update(_flatten(load_checkpoint(run / name), name))
    if (run / "metrics.csv").exists():
        with open(run / "metrics.csv", newline="") as handle:
            out.update(_flatten([dict(row) for row in csv.DictReader(handle)], "metrics.csv"))
    if (run / "summary.json").exists():
        summary = json.loads((run / "summary.json").read_text())
        summary["figures"] = [Path(p).name for p in summary.get("figures", [])]
        out.update(_flatten(summary, "summary.json"))
    if (run / "config.toml").exists():
        config = tomllib.loads((run / "config.toml").read_text())
        out.update(_flatten(config, "config.toml"))
    return out


def differences(a: dict, b: dict, ignore: tuple[str, ...] = ("config.toml/data/data_dir",)) -> list[str]:
    """Keys whose values differ between two :func:`run_outcome` results (empty: equal)."""
    keys = (a.keys() | b.keys()) - set(ignore)
    return sorted(k for k in keys if k not in a or k not in b or not _same(a[k], b[k]))


def corrupt_files(run: Path) -> list[str]:
    """Run files (not temporaries) that exist but cannot be read whole."""
    run, bad = Path(run), []
    for name in (LAST, BEST):
        if (run / name).exists():
            try:
                load_checkpoint(run / name)
            except PyroVAEError as err:
                bad.append(f"{name}: {err}")
    readers = {"metrics.csv": lambda text: list(csv.DictReader(text.splitlines())),
               "summary.json": json.loads, "loglik.json": json.loads, "evaluation.json": json.loads,
               "config.toml": tomllib.loads}
    for name, read in readers.items():
        if (run / name).exists():
            try:
                read((run / name).read_text())
            except (ValueError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
                bad.append(f"{name}: {err}")
    for png in run.glob("*.png"):
        data = png.read_bytes()
        if not (data.startswith(b"\x89PNG\r\n\x1a\n") and data[-12:-4] == b"\0\0\0\0IEND"):
            bad.append(f"{png.name}: not a whole PNG")
    return bad
