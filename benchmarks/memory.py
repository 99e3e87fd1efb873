"""Peak resident memory of `pyro-vae evaluate` and of a loaded data set, over several runs.

Each measure runs in its own process (``python -m pyro_vae.cli ...``); its peak RSS is the
``ru_maxrss`` that :func:`os.wait4` returns for that child alone (what ``/usr/bin/time -v``
prints as "Maximum resident set size"). Several runs of one command show how far the peak
depends on the allocator's luck rather than on the work: the spread is (max - min) / max.

    python benchmarks/memory.py [--run-dir RUN] [--k 5000 20000] [--limit 1000] [--runs 5]
                                [--env NAME=VALUE ...]

Without ``--run-dir`` a binarized-MNIST-size MLP run (784-400-50, one short epoch) is
trained once into a temporary folder; binarized MNIST is looked for with the usual search
(``$PYRO_VAE_SHARED_DATA`` or ``--data-dir``). ``--env`` adds environment variables to the
measured processes (``MALLOC_MMAP_THRESHOLD_=...`` to compare an allocator setting).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, git_commit, write_result

MIB = 1024 * 1024
# Resident bytes (/proc/self/statm) before and after load_dataset, and the images' count of
# pixels (their bytes as uint8), in a fresh process that imports the library only.
DATASET_PROBE = """
import gc, os, sys
from pyro_vae.data.datasets import load_dataset
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
start = rss()
dataset = load_dataset(sys.argv[1], sys.argv[2], binarize=sys.argv[3])
gc.collect()
end = rss()
image_bytes = sum(dataset.split(s).images.shape.numel() for s in ('train', 'valid', 'test'))
print(start, end, image_bytes)
"""


def peak_rss(command: list[str], env: dict) -> tuple[int, float]:
    """Run ``command``; its own peak RSS in bytes (Linux reports KiB) and its seconds."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")
    process.stderr.close()
    return usage.ru_maxrss * 1024, seconds


def train_probe_run(run_dir: Path, data_dir: str, env: dict) -> None:
    subprocess.run([sys.executable, "-m", "pyro_vae.cli", "train", "--dataset", "binarized-mnist",
                    *(["--data-dir", data_dir] if data_dir else []), "--latent-dim", "50",
                    "--hidden-dims", "400", "--epochs", "1", "--train-limit", "1000", "--no-progress",
                    "--run-dir", str(run_dir)], env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="")
    parser.add_argument("--data-dir", default=os.environ.get("PYRO_VAE_SHARED_DATA", ""))
    parser.add_argument("--k", type=int, nargs="*", default=[5000, 20000])
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--env", nargs="*", default=[], help="NAME=VALUE for the measured processes")
    parser.add_argument("--datasets", nargs="*", default=["binarized-mnist", "fashion-mnist"])
    parser.add_argument("--name", default="memory", help="result file name under benchmarks/results/")
    parser.add_argument("--src", default=str(ROOT / "src"), help="the pyro_vae sources measured (another "
                        "checkout's src/ to compare)")
    args = parser.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=args.src)
    env.update(item.split("=", 1) for item in args.env)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run_dir) if args.run_dir else Path(tmp) / "run"
        if not args.run_dir and args.k:
            train_probe_run(run_dir, args.data_dir, env)
        for k in args.k:
            command = [sys.executable, "-m", "pyro_vae.cli", "evaluate", str(run_dir), "--k", str(k),
                       "--limit", str(args.limit), "-o", str(Path(tmp) / f"loglik-{k}.json")]
            peaks, seconds = [], []
            for _ in range(args.runs):
                peak, secs = peak_rss(command, env)
                peaks.append(peak / MIB)
                seconds.append(secs)
                print(f"evaluate --k {k} --limit {args.limit}: peak {peak / MIB:.0f} MiB ({secs:.0f} s)", flush=True)
            rows.append({"command": f"pyro-vae evaluate RUN --k {k} --limit {args.limit}",
                         "peak_mib": peaks, "worst_mib": max(peaks),
                         "spread": (max(peaks) - min(peaks)) / max(peaks), "seconds": seconds})

    datasets = []
    for name in args.datasets:
        binarize = "none"
        probe = subprocess.run([sys.executable, "-c", DATASET_PROBE, name, args.data_dir if name == "binarized-mnist"
                                else "", binarize], env=env, capture_output=True, text=True)
        if probe.returncode != 0:
            print(f"{name}: not measured ({probe.stderr.strip().splitlines()[-1]})")
            continue
        start, end, image_bytes = (int(v) for v in probe.stdout.split())
        datasets.append({"dataset": name, "resident_mib": (end - start) / MIB, "image_mib_as_uint8": image_bytes / MIB,
                         "ratio": (end - start) / image_bytes})
        print(f"{name}: {(end - start) / MIB:.0f} MiB resident for {image_bytes / MIB:.0f} MiB of uint8 images "
              f"({(end - start) / image_bytes:.2f}x)")
    path = write_result(args.name, {"commit": git_commit(), "src": args.src, "environment": args.env, "runs": args.runs,
                                    "evaluate": rows, "datasets": datasets,
                                    "load_average": os.getloadavg()})
    print(path)


if __name__ == "__main__":
    main()
