#!/bin/bash
# #14 (eighth session, branch labels8, code at 23c0a78): a Fashion-MNIST CVAE; selected by the validation images
# (evaluate --split valid --seed 1 -> label_fidelity_valid.json); label_fidelity.json (test split, seed 0) only where
# docs/results.md reports the test figures.
export OMP_NUM_THREADS=1
pyro-vae train --model cvae --dataset fashion-mnist --hidden-dims 512,256 --objective analytic-kl --train-limit 0 --latent-dim 8 --epochs 10 --seed 1 --beta 16 --run-dir runs/cvae-fashion-full-beta16-s1
pyro-vae evaluate runs/cvae-fashion-full-beta16-s1 --label-fidelity --split valid --seed 1 -o runs/cvae-fashion-full-beta16-s1/label_fidelity_valid.json
pyro-vae evaluate runs/cvae-fashion-full-beta16-s1 --label-fidelity
