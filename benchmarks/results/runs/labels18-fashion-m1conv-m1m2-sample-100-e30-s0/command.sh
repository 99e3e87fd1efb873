#!/bin/bash
# docs/results.md, "Semi-supervised M2 on Fashion-MNIST", the convolutional M1 (eighteenth session): M1+M2 on the codes of labels18-fashion-m1conv-continuous-bernoulli-e30 (its command.sh), 100 labels, seed 0,
# codes: sample; M2 an MLP of 500, z_2 of 16, alpha 20,000, natural weighting, 30 epochs at a constant learning rate;
# selected by validation accuracy, test scored once. Code at c28b57c (src as committed there), one torch thread.
R=~/pyro-vae-runs/labels18; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-m1bin/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model m1m2 --m1-run $R/fashion-m1conv-continuous-bernoulli-e30 --dataset fashion-mnist --labels 100 --latent-dim 16 \
  --hidden-dims 500 --epochs 30 --seed 0 --m1-codes sample --figures false --no-progress --run-dir $R/fashion-m1conv-m1m2-sample-100-e30-s0
