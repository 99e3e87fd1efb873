#!/bin/bash
# Fashion-MNIST VAE row (#19, twelfth session): the long VAE's best checkpoint (fashion-vae-long-e561, epoch 553;
# the run named vae-snap-final here) trained on as the recipes' second stage: Adam 1e-4 decayed 10% an epoch, a
# fresh Adam, no KL warm-up, 20 epochs (154 CPU s), selected by validation log p(x) (K=100, the same 1,000 images):
# -226.90 -> -226.46 (epoch 19). Then test log p(x) of the best checkpoint on all 10,000 test images (binarized once
# with seed 0) at K=5000 (1,404 s beside two other runs). Code at 3423551 (run-vae-lowlr.sh, run-eval.sh,
# run-final-chain.sh).
export PYTHONPATH=/root/pyro-vae-runs/loglik11/code-3423551/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/loglik11
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-3423551/configs/fashion-mnist-vae-recipe.toml \
  --init-from vae-snap-final --run-dir vae-lowlr-final --learning-rate 1e-4 --lr-decay 0.9 --epochs 20 --patience 0 \
  --kl-warmup-epochs 0 --figures false --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate vae-lowlr-final --checkpoint best --k 5000 -o vae-lowlr-final/loglik_k5000_all_best.json
# Paired with the recipe VAE (../fashion-vae-recipe) and the eleventh session's row (../fashion-vae-long-ft) on the same images:
# python -c "import numpy as n; a=n.load('../fashion-vae-recipe/loglik_k5000_all_best_examples.npz'); b=n.load('loglik_k5000_all_best_examples.npz'); assert (a['index']==b['index']).all(); d=b['log_likelihood']-a['log_likelihood']; print(d.mean(), d.std(ddof=1)/len(d)**.5, (d>0).mean())"
