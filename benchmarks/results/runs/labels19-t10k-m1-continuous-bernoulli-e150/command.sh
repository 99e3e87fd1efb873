#!/bin/bash
# docs/results.md, "M1 on grey levels" (nineteenth session): the eighteenth session's grey-level M1 trained again on this
# machine (labels18-t10k-m1-continuous-bernoulli-e150's command; 784-512-256-50, continuous Bernoulli, analytic KL,
# KL warm-up 20, 150 epochs). Code at 40d0164, one torch thread.
R=~/pyro-vae-runs/labels19; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-40d0164/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model vae --dataset mnist-t10k --binarize none --likelihood continuous-bernoulli \
  --latent-dim 50 --hidden-dims 512,256 --objective analytic-kl --kl-warmup-epochs 20 --epochs 150 --figures false --no-progress \
  --run-dir $R/t10k-m1-continuous-bernoulli-e150
