#!/bin/bash
# docs/results.md, "M1 on grey levels", the Gaussian M1 aside (eighteenth session): M1 for M1+M2 on fashion-mnist, trained on the grey levels with a learned-scale
# Gaussian likelihood (--binarize none); otherwise the seventeenth session's M1 (784-512-256-50, analytic
# KL, KL warm-up 10 epochs, 60 epochs). Code at 9eee5a4, one torch thread.
R=~/pyro-vae-runs/labels18; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-9eee5a4/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model vae --dataset fashion-mnist --binarize none --likelihood gaussian-learned \
  --latent-dim 50 --hidden-dims 512,256 --objective analytic-kl --kl-warmup-epochs 10 --epochs 60 --figures false --no-progress \
  --run-dir $R/fashion-m1-gaussian-learned-e60
