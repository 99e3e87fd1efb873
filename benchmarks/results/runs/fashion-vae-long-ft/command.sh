#!/bin/bash
# Fashion-MNIST VAE row (#19, eleventh session): the long VAE's best checkpoint (fashion-vae-long-e238, a copy of the
# run named probe-snap-240 here) trained on at 1e-4 as the recipes' second stage: a fresh Adam, no KL warm-up,
# 8 epochs (58 CPU s), selected by validation log p(x) (K=100, the same 1,000 images): -227.82 -> -227.35. Then test
# log p(x) of the best checkpoint (epoch 8) on all 10,000 test images (binarized once with seed 0) at K=1000 and
# K=5000. Code at 3423551 (run-vae-lowlr.sh, run-eval.sh).
export PYTHONPATH=/root/pyro-vae-runs/loglik11/code-3423551/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/loglik11
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-3423551/configs/fashion-mnist-vae-recipe.toml \
  --init-from probe-snap-240 --run-dir probe-lowlr-240 --learning-rate 1e-4 --lr-decay 1.0 --epochs 8 --patience 0 \
  --kl-warmup-epochs 0 --figures false --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate probe-lowlr-240 --checkpoint best --k 1000 -o probe-lowlr-240/loglik_k1000_all_best.json
/work/main/.venv/bin/python -m pyro_vae.cli evaluate probe-lowlr-240 --checkpoint best --k 5000 -o probe-lowlr-240/loglik_k5000_all_best.json
# Paired with the recipe VAE (../fashion-vae-recipe) on the same images:
# python -c "import numpy as n; a=n.load('../fashion-vae-recipe/loglik_k1000_all_best_examples.npz'); b=n.load('loglik_k1000_all_best_examples.npz'); assert (a['index']==b['index']).all(); d=b['log_likelihood']-a['log_likelihood']; print(d.mean(), d.std(ddof=1)/len(d)**.5, (d>0).mean())"
