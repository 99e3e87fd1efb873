#!/bin/bash
# docs/results.md, "Semi-supervised M2 on Fashion-MNIST", the convolutional M1 (eighteenth session): M1 for M1+M2 on
# Fashion-MNIST grey levels, continuous Bernoulli (--binarize none), conv 32-64 with a dense layer of 512, 50-d z,
# analytic KL, KL warm-up 10 epochs, 30 epochs. Code at c28b57c, one torch thread.
R=~/pyro-vae-runs/labels18; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-m1bin/src
$PY -m pyro_vae.cli train --model vae --dataset fashion-mnist --binarize none --likelihood continuous-bernoulli \
  --network conv --conv-channels 32,64 --hidden-dims 512 --latent-dim 50 --objective analytic-kl --kl-warmup-epochs 10 \
  --epochs 30 --figures false --no-progress --run-dir $R/fashion-m1conv-continuous-bernoulli-e30
