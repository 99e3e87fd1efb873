#!/bin/bash
# docs/results.md, Fashion-MNIST M2 first table, balanced weighting (alpha 50), 3000 labels, seed 1 (sixteenth session):
# the first session's row (run files never committed) rerun with the code at 4b47d8d and configs/fashion-mnist-m2.toml
# (20 epochs), one torch thread, niced, with other processes on the 2 cores (5,172 s wall, 1,377 s user).
R=~/pyro-vae-runs/labels16
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-4b47d8d/src
cd $R/code-4b47d8d
/work/main/.venv/bin/python -m pyro_vae.cli train --config configs/fashion-mnist-m2.toml --figures false --no-progress \
  --labels 3000 --labelled-weight balanced --alpha 50 --seed 1 --run-dir $R/fashion-m2-balanced-3000-s1
