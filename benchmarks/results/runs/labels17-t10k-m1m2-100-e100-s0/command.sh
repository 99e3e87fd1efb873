#!/bin/bash
# The first 100 epochs of labels17-t10k-m1m2-100-e400-s0 (its command.sh), with its own baselines at a 100-epoch budget.
R=~/pyro-vae-runs/labels17; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-b932749/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model m1m2 --m1-run $R/t10k-m1-e150 --dataset mnist-t10k --labels 100 --latent-dim 16 \
  --hidden-dims 500 --epochs 100 --seed 0 --figures false --no-progress --run-dir $R/t10k-m1m2-100-e100-s0
