#!/bin/bash
# docs/results.md, "M1+M2 trained long" (seventeenth session): M1 for M1+M2 on mnist-t10k (7,000 training images),
# 784-512-256-50 VAE, analytic KL, KL warm-up 20 epochs, 150 epochs (166 CPU s); code at b932749, one torch thread.
R=~/pyro-vae-runs/labels17; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-b932749/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model vae --dataset mnist-t10k --latent-dim 50 --hidden-dims 512,256 --objective analytic-kl \
  --kl-warmup-epochs 20 --epochs 150 --figures false --no-progress --run-dir $R/t10k-m1-e150
