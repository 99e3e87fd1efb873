#!/bin/bash
# docs/results.md, "Against Pyro's own example" (nineteenth session): M1+M2 on the codes of labels19-fashion-m1-continuous-bernoulli-e60,
# 100 labels, seed 1, 9 epochs at the example's batch of 100 (otherwise as labels18-fashion-m1cb-m1m2-sample-100-e9-s1).
# Code at 40d0164, one torch thread.
R=~/pyro-vae-runs/labels19; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-40d0164/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model m1m2 --m1-run $R/fashion-m1-continuous-bernoulli-e60 --dataset fashion-mnist --labels 100 --latent-dim 16 \
  --hidden-dims 500 --epochs 9 --batch-size 100 --seed 1 --m1-codes sample --figures false --no-progress --run-dir $R/fashion-m1cb-m1m2-sample-100-e9-b100-s1
