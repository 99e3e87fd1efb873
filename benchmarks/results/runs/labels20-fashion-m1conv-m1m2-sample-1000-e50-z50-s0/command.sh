#!/bin/bash
# docs/results.md, "z_2 of 50" (twentieth session): M1+M2 on Fashion-MNIST on the codes of labels19-fashion-m1conv-continuous-bernoulli-e30
# (its command.sh), 1000 labels, seed 0; codes: sample; M2 an MLP of 500, z_2 of 50, alpha 20,000, natural weighting, 50 epochs;
# selected by validation accuracy, test scored once. Code at ab14070, one torch thread; the two seeds ran at once.
R=~/pyro-vae-runs/labels20; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-ab14070/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model m1m2 --m1-run ~/pyro-vae-runs/labels19/fashion-m1conv-continuous-bernoulli-e30 --dataset fashion-mnist --labels 1000 --latent-dim 50 \
  --hidden-dims 500 --epochs 50 --seed 0 --m1-codes sample --figures false --no-progress --run-dir $R/fashion-m1conv-m1m2-sample-1000-e50-z50-s0
