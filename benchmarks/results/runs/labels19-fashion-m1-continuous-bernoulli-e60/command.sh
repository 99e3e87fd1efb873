#!/bin/bash
# docs/results.md, "Against Pyro's own example" (nineteenth session): the eighteenth session's grey-level Fashion-MNIST M1
# trained again on this machine (labels18-fashion-m1-continuous-bernoulli-e60's command; same test ELBO to 1e-8).
# Code at 40d0164, one torch thread.
R=~/pyro-vae-runs/labels19; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-40d0164/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model vae --dataset fashion-mnist --binarize none --likelihood continuous-bernoulli \
  --latent-dim 50 --hidden-dims 512,256 --objective analytic-kl --kl-warmup-epochs 10 --epochs 60 --figures false --no-progress \
  --run-dir $R/fashion-m1-continuous-bernoulli-e60
