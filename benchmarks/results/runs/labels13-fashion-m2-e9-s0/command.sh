#!/bin/bash
# #14 (thirteenth session): M2 on Fashion-MNIST, 100 labels, the repository's recipe (configs/fashion-mnist-m2.toml:
# MLPs 784-512-256, z of 32, alpha 20,000, natural weighting, batch 128, Adam 1e-3, dynamic binarization) for 9
# epochs, the epochs of the comparison with Pyro's own ss_vae_M2.py (benchmarks/results/pyro-ss-vae-m2/). Selected by
# validation accuracy, test scored once; the supervised baseline trains the same classifier on the same labels.
# Code at c1fb170; about 50 CPU s an epoch beside another run.
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
pyro-vae train --config configs/fashion-mnist-m2.toml --labels 100 --epochs 9 --seed 0 --figures false \
  --run-dir runs/fashion-m2-e9-s0
