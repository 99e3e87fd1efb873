#!/bin/bash
# docs/results.md, "Semi-supervised M2 on Fashion-MNIST", the convolutional M1 at 1000 labels (nineteenth session): M1+M2 on the codes of
# labels19-fashion-m1conv-continuous-bernoulli-e30, 1000 labels, seed 1, 50 epochs; codes: sample; M2 an MLP of 500, z_2 of 16,
# alpha 20,000, natural weighting; selected by validation accuracy, test scored once. Code at 40d0164, one torch thread.
R=~/pyro-vae-runs/labels19; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-40d0164/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model m1m2 --m1-run $R/fashion-m1conv-continuous-bernoulli-e30 --dataset fashion-mnist --labels 1000 --latent-dim 16 \
  --hidden-dims 500 --epochs 50 --seed 1 --m1-codes sample --figures false --no-progress --run-dir $R/fashion-m1conv-m1m2-sample-1000-e50-s1
