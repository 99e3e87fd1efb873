#!/usr/bin/env bash
# The Fashion-MNIST sweep of docs/experiments.md: beta in {0.5, 1, 2} x objective in
# {elbo, iwae}, 3 seeds, 5 epochs on the first 10,000 training images; then log p(x) of every
# run (K = 100, 1,000 test images drawn at random with seed 0), the compare table and the figures. The small
# result files (no checkpoints) are copied to benchmarks/results/fmnist-sweep/.
# Usage: benchmarks/sweep_fmnist.sh [SWEEP_DIR]   (default sweeps/fmnist-beta-objective)
set -euo pipefail
SWEEP=${1:-sweeps/fmnist-beta-objective}
OUT=benchmarks/results/fmnist-sweep
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
PV="python -m pyro_vae.cli"

$PV sweep --config configs/fashion-mnist-sweep.toml --sweep-dir "$SWEEP" --workers 2
$PV evaluate "$SWEEP"/*=* --k 100 --limit 1000
mkdir -p "$OUT/runs"
$PV compare "$SWEEP" -o "$OUT/compare" --reference "$SWEEP/beta=1,objective=elbo,seed=0" \
    --figure docs/figures/sweep-fmnist.png --metric test_elbo
$PV plot "$SWEEP"/*seed=0 --kind curves -o docs/figures/sweep-fmnist-curves.png
cp "$SWEEP/results.csv" "$SWEEP/sweep.json" "$OUT/"
for run in "$SWEEP"/*=*; do
    mkdir -p "$OUT/runs/$(basename "$run")"
    cp "$run"/{summary.json,metrics.csv,config.toml,loglik.json} "$OUT/runs/$(basename "$run")/"
done
