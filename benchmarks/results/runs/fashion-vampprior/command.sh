#!/bin/bash
# Fashion-MNIST VampPrior row (#19, tenth session): the Fashion VAE recipe's best checkpoint (run fashion-vae-recipe,
# epoch 116) with a VampPrior of 500 pseudo-inputs started at training images (--pseudo-init data; only they start
# afresh), trained on with IWAE-DReG K=5 (as the static-MNIST VampPrior row's second stage), Adam 3e-4 decayed 5% an
# epoch, no KL warm-up, 25 epochs, selected by validation log p(x) K=100 on 1,000 fixed validation images (best: the
# last epoch, -227.79); then test log p(x) of the best checkpoint at K=1000 and K=5000 on all 10,000 test images
# (binarized once with seed 0, the same images as fashion-vae-recipe's). 2,084 CPU s of training at load 2.5-3
# (the source VAE: 1,942). Code at d995281. The same settings as a config: configs/fashion-mnist-vampprior-ft.toml.
export PYTHONPATH=/root/pyro-vae-runs/loglik10/code-d995281/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/loglik10
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-d995281/configs/fashion-mnist-vae-recipe.toml \
  --run-dir fashion-vampprior --init-from /root/pyro-vae-runs/loglik8/fashion-vae-recipe \
  --prior vamp --pseudo-inputs 500 --pseudo-init data --objective iwae-dreg --k 5 --kl-warmup-epochs 0 \
  --learning-rate 3e-4 --lr-decay 0.95 --epochs 25 --figures false --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate fashion-vampprior --checkpoint best --k 1000 -o fashion-vampprior/loglik_k1000_all_best.json
/work/main/.venv/bin/python -m pyro_vae.cli evaluate fashion-vampprior --checkpoint best --k 5000 -o fashion-vampprior/loglik_k5000_all_best.json
# Paired with the VAE on the same images (from this directory and ../fashion-vae-recipe):
# python -c "import numpy as n; a=n.load('../fashion-vae-recipe/loglik_k5000_all_best_examples.npz'); b=n.load('loglik_k5000_all_best_examples.npz'); assert (a['index']==b['index']).all(); d=b['log_likelihood']-a['log_likelihood']; print(d.mean(), d.std(ddof=1)/len(d)**.5, (d>0).mean())"
