#!/bin/bash
# #14 (fourteenth session): the ADGM on Fashion-MNIST, 100 labels, 9 epochs (the epochs of the comparison with Pyro's
# examples/vae/ss_vae_M2.py), configs/fashion-mnist-m2.toml with --model adgm, seed 1; selected by validation
# accuracy, test scored once. Code at daeb383 (run-fashion-adgm.sh 1 in ~/pyro-vae-runs/labels14).
pyro-vae train --config configs/fashion-mnist-m2.toml --model adgm --labels 100 --epochs 9 --seed 1 \
    --figures false --run-dir runs/fashion-adgm-e9-s1
