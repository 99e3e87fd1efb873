#!/bin/bash
# docs/results.md, "M1 on grey levels" (nineteenth session): a second convolutional M1 on mnist-t10k, M1 seed 1 (--seed 1);
# otherwise labels19-t10k-m1conv-continuous-bernoulli-e150's command. Code at 40d0164, one torch thread.
R=~/pyro-vae-runs/labels19; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-40d0164/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model vae --dataset mnist-t10k --binarize none --likelihood continuous-bernoulli \
  --network conv --conv-channels 32,64 --hidden-dims 512 --latent-dim 50 --objective analytic-kl --kl-warmup-epochs 20 \
  --epochs 150 --seed 1 --figures false --no-progress --run-dir $R/t10k-m1conv-continuous-bernoulli-e150-m1s1
