#!/bin/bash
# Fashion-MNIST VampPrior row (#19, twelfth session): configs/fashion-mnist-vampprior-ft.toml (a VampPrior of 500
# pseudo-inputs started at training images, IWAE-DReG K=5, Adam 3e-4, selected by validation log p(x) K=100 on
# 1,000 fixed validation images) for 50 epochs with the rate decayed 3% an epoch (the config's 5% had fallen to 5e-5
# while the eleventh session's 35 epochs still rose), from the VAE row's model (../fashion-vae-long-ft20, the run
# named vae-lowlr-final here): 2,073 CPU s, best epoch 49 (validation -225.23). Then test log p(x) of the best
# checkpoint at K=5000 on all 10,000 test images (binarized once with seed 0; 1,471 s). Code at 3423551
# (run-fashion-vampprior-from.sh vae-lowlr-final fashion-vampprior-final, from run-final-chain.sh).
export PYTHONPATH=/root/pyro-vae-runs/loglik11/code-3423551/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/loglik11
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-3423551/configs/fashion-mnist-vampprior-ft.toml \
  --init-from vae-lowlr-final --epochs 50 --lr-decay 0.97 --run-dir fashion-vampprior-final --figures false --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate fashion-vampprior-final --checkpoint best --k 5000 \
  -o fashion-vampprior-final/loglik_k5000_all_best.json
# Paired with its VAE (../fashion-vae-long-ft20) on the same images:
# python -c "import numpy as n; a=n.load('../fashion-vae-long-ft20/loglik_k5000_all_best_examples.npz'); b=n.load('loglik_k5000_all_best_examples.npz'); assert (a['index']==b['index']).all(); d=b['log_likelihood']-a['log_likelihood']; print(d.mean(), d.std(ddof=1)/len(d)**.5, (d>0).mean())"
