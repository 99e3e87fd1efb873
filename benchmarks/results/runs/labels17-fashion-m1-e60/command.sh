#!/bin/bash
# docs/results.md, Fashion-MNIST M1+M2 (seventeenth session): M1, a 784-512-256-50 VAE on all 50,000 training images
# (dynamic binarization), analytic KL, KL warm-up 10 epochs, 60 epochs (358 CPU s); code at 0ee0832, one torch thread.
R=~/pyro-vae-runs/labels17; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-0ee0832/src
$PY -m pyro_vae.cli train --model vae --dataset fashion-mnist --latent-dim 50 --hidden-dims 512,256 --objective analytic-kl \
  --kl-warmup-epochs 10 --epochs 60 --figures false --no-progress --run-dir $R/fashion-m1-e60
