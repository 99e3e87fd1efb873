#!/bin/bash
# docs/results.md, Fashion-MNIST M1+M2 (seventeenth session): M1+M2 on the codes of labels17-fashion-m1-e60, 100 labels,
# seed 0, codes drawn every batch (--m1-codes sample); M2 an MLP of 500, z_2 of 16, alpha 20,000, natural weighting,
# 100 epochs; selected by validation accuracy, test scored once. Code at 0ee0832; the two seeds ran side by side.
R=~/pyro-vae-runs/labels17; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-0ee0832/src
$PY -m pyro_vae.cli train --model m1m2 --m1-run $R/fashion-m1-e60 --dataset fashion-mnist --labels 100 --latent-dim 16 \
  --hidden-dims 500 --epochs 100 --seed 0 --m1-codes sample --figures false --no-progress --run-dir $R/fashion-m1m2-sample-100-e100-s0
$PY -m pyro_vae.cli evaluate $R/fashion-m1m2-sample-100-e100-s0 --label-fidelity     # label_fidelity.json
