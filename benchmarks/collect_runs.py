"""Copy the small result files of the benchmark runs (not their checkpoints) into
benchmarks/results/runs/<run>/, so the numbers in docs/results.md stay in the repository.

    python benchmarks/collect_runs.py runs/fmnist-vae runs/bmnist-vae ...
"""

import shutil
import sys
from pathlib import Path

KEEP = ("config.toml", "metrics.csv", "summary.json", "labelled_examples.json")
DEST = Path(__file__).resolve().parent / "results" / "runs"

for run in map(Path, sys.argv[1:]):
    target = DEST / run.name
    target.mkdir(parents=True, exist_ok=True)
    for path in [run / name for name in KEEP] + sorted(run.glob("loglik*.json")) + sorted(run.glob("evaluation*.json")):
        if path.exists():
            shutil.copy2(path, target / path.name)
            print(target / path.name)
