#!/bin/bash
# docs/results.md, "Against Pyro's own example" (nineteenth session): the eighteenth session's convolutional grey-level
# Fashion-MNIST M1 trained again on this machine (labels18-fashion-m1conv-continuous-bernoulli-e30's command: continuous
# Bernoulli, conv 32-64 with a dense layer of 512, 50-d z, analytic KL, warm-up 10, 30 epochs). Code at 40d0164, one torch thread.
R=~/pyro-vae-runs/labels19; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-40d0164/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model vae --dataset fashion-mnist --binarize none --likelihood continuous-bernoulli \
  --network conv --conv-channels 32,64 --hidden-dims 512 --latent-dim 50 --objective analytic-kl --kl-warmup-epochs 10 \
  --epochs 30 --figures false --no-progress --run-dir $R/fashion-m1conv-continuous-bernoulli-e30
