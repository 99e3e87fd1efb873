#!/bin/bash
# docs/results.md, Fashion-MNIST M2 first table, balanced weighting (alpha 50), 100 labels, seed 0 (fifteenth session):
# the first session's row (run files never committed) rerun with the code at 2be6b31 and configs/fashion-mnist-m2.toml
# (20 epochs), one torch thread, two processes on the 2 cores.
R=~/pyro-vae-runs/labels15
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-2be6b31/src
cd $R/code-2be6b31
/work/main/.venv/bin/python -m pyro_vae.cli train --config configs/fashion-mnist-m2.toml --figures false --no-progress \
  --labels 100 --labelled-weight balanced --alpha 50 --seed 0 --run-dir $R/fashion-m2-balanced-100-s0
