#!/bin/bash
# docs/results.md, "M1 on grey levels" (nineteenth session): a convolutional M1 for M1+M2 on mnist-t10k, grey levels,
# continuous Bernoulli (--binarize none), conv 32-64 with a dense layer of 512, 50-d z, analytic KL, KL warm-up 20 epochs,
# 150 epochs. Code at 40d0164 (src as committed there), one torch thread.
R=~/pyro-vae-runs/labels19; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-40d0164/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model vae --dataset mnist-t10k --binarize none --likelihood continuous-bernoulli \
  --network conv --conv-channels 32,64 --hidden-dims 512 --latent-dim 50 --objective analytic-kl --kl-warmup-epochs 20 \
  --epochs 150 --figures false --no-progress --run-dir $R/t10k-m1conv-continuous-bernoulli-e150
