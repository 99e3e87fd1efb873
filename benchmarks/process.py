"""A whole short job: `pyro-vae train` for E epochs on binarized MNIST (784-400-50 MLP), with
its default figures and with ``--figures false``, against `benchmarks/handwritten_vae.py`
doing the same epochs (no figures), each a fresh process, alternated; each process's CPU seconds (user + system) and wall seconds, and its peak
RSS (``os.wait4``). Also the start-up
alone: ``import pyro_vae.cli`` against ``import torch, pyro``. The package is byte-compiled
first (``compileall``, into the ignored ``__pycache__`` folders), as an installed one is.

    python benchmarks/process.py [--data-dir DIR] [--epochs 3] [--train-limit 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import compileall
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, git_commit, median, write_result

MIB = 1024 * 1024


def run(command: list[str], env: dict) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")
    process.stderr.close()
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("PYRO_VAE_SHARED_DATA", ""),
                        help="the folder holding binarized_mnist_{train,valid,test}.amat.gz")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    if not (data_dir / "binarized_mnist_train.amat.gz").exists():
        data_dir = data_dir / "binarized_mnist"
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(ROOT / "src"))
    # The package's modules load from bytecode, as an installed package's do (pip compiles them on
    # install): with PYTHONDONTWRITEBYTECODE set (as on the benchmark machine) every child would
    # otherwise compile all of src/pyro_vae again (about 0.16 s of CPU), which no user pays.
    compileall.compile_dir(ROOT / "src" / "pyro_vae", quiet=1)
    rows = {"pyro_vae_cli": [], "pyro_vae_cli_no_figures": [], "handwritten": [], "import_pyro_vae_cli": [],
            "import_torch_pyro": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            limit = ["--train-limit", str(args.train_limit)] if args.train_limit else []
            commands = {
                "pyro_vae_cli": [sys.executable, "-m", "pyro_vae.cli", "train", "--dataset", "binarized-mnist",
                                 "--data-dir", str(data_dir), "--hidden-dims", "400", "--latent-dim", "50",
                                 "--epochs", str(args.epochs), *limit, "--no-progress", "--run-dir", f"{tmp}/cli{i}"],
                "pyro_vae_cli_no_figures": [sys.executable, "-m", "pyro_vae.cli", "train", "--dataset", "binarized-mnist",
                                            "--data-dir", str(data_dir), "--hidden-dims", "400", "--latent-dim", "50",
                                            "--epochs", str(args.epochs), *limit, "--no-progress", "--figures", "false",
                                            "--run-dir", f"{tmp}/nofig{i}"],
                "handwritten": [sys.executable, str(ROOT / "benchmarks" / "handwritten_vae.py"), str(data_dir),
                                f"{tmp}/hand{i}", "--epochs", str(args.epochs), *limit],
                "import_pyro_vae_cli": [sys.executable, "-c", "import pyro_vae.cli"],
                "import_torch_pyro": [sys.executable, "-c", "import torch, pyro"],
            }
            for name, command in commands.items():
                seconds, cpu, peak = run(command, env)
                rows[name].append({"wall_seconds": seconds, "seconds": cpu, "peak_mib": peak})
                print(f"{name}: {seconds:.1f} s wall, {cpu:.1f} s CPU, peak {peak:.0f} MiB", flush=True)
    # CPU seconds: on an oversubscribed machine wall time measures the other jobs as much as this one.
    med = {name: median([r["seconds"] for r in runs]) for name, runs in rows.items()}
    ratios = [a["seconds"] / b["seconds"] for a, b in zip(rows["pyro_vae_cli"], rows["handwritten"])]
    no_figures = [a["seconds"] / b["seconds"] for a, b in zip(rows["pyro_vae_cli_no_figures"], rows["handwritten"])]
    result = {"commit": git_commit(), "epochs": args.epochs, "train_limit": args.train_limit, "runs": rows,
              "median_s": med, "ratio_each_pair": ratios, "ratio": med["pyro_vae_cli"] / med["handwritten"],
              "no_figures_ratio_each_pair": no_figures,
              "no_figures_ratio": med["pyro_vae_cli_no_figures"] / med["handwritten"],
              "load_average": os.getloadavg()}
    print(f"CLI / hand-written: {result['ratio']:.3f} (pairs {', '.join(f'{r:.3f}' for r in ratios)}); "
          f"with --figures false {result['no_figures_ratio']:.3f} (pairs {', '.join(f'{r:.3f}' for r in no_figures)})")
    print(write_result("process", result))


if __name__ == "__main__":
    main()
