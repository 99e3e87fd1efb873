"""Shared benchmark helpers: machine description, alternating timing, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import pyro

    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "pyro": pyro.__version__,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}


def alternate(candidates: dict, repeats: int, warmup: int = 3, clock=time.perf_counter) -> dict[str, list[float]]:
    """Time each zero-argument callable ``repeats`` times, interleaved round-robin so that
    load on a shared machine hits all of them alike. Returns seconds per call of ``clock``
    (wall time by default; ``time.thread_time`` counts only the time this thread ran, which
    an oversubscribed machine inflates far less)."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    script = f"benchmarks/{Path(sys.argv[0]).name}"
    command = " ".join(["OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python", script, *sys.argv[1:]])
    payload = {"command": command, "machine": machine(),
               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
