#!/bin/bash
# #14 (eleventh session): M2 --beta 4 on Fashion-MNIST, 100 labels, with the first 10,000 training images as the
# unlabelled set (--train-limit 10000), 150 epochs: the mnist-t10k regime (7,000 images) where long training paid.
# Code at 3423551.
export PYTHONPATH=/root/pyro-vae-runs/loglik11/code-3423551/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/labels11
/work/main/.venv/bin/python -m pyro_vae.cli train --model m2 --labels 100 --dataset fashion-mnist --train-limit 10000 \
  --latent-dim 32 --hidden-dims 512,256 --epochs 150 --beta 4 --seed 1 --run-dir fashion10k-m2-beta4-e150-s1 --figures false --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate fashion10k-m2-beta4-e150-s1 --label-fidelity
