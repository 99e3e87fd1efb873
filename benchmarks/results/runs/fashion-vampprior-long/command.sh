#!/bin/bash
# Fashion-MNIST VampPrior row (#19, eleventh session): configs/fashion-mnist-vampprior-ft.toml (a VampPrior of 500
# pseudo-inputs started at training images; IWAE-DReG K=5, Adam 3e-4 decayed 5% an epoch, no KL warm-up, selected by
# validation log p(x) K=100 on 1,000 fixed validation images) for 35 epochs instead of 25 (about 36 CPU s each,
# 1,254 in all), from the long VAE after its low-rate stage (fashion-vae-long-ft, named probe-lowlr-240 here). Then test
# log p(x) of the best checkpoint (epoch 35) on all 10,000 test images at K=1000 and K=5000. Code at 3423551
# (run-fashion-vampprior-long.sh, run-eval.sh).
export PYTHONPATH=/root/pyro-vae-runs/loglik11/code-3423551/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/loglik11
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-3423551/configs/fashion-mnist-vampprior-ft.toml \
  --init-from probe-lowlr-240 --epochs 35 --run-dir fashion-vampprior-long --figures false --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate fashion-vampprior-long --checkpoint best --k 1000 -o fashion-vampprior-long/loglik_k1000_all_best.json
/work/main/.venv/bin/python -m pyro_vae.cli evaluate fashion-vampprior-long --checkpoint best --k 5000 -o fashion-vampprior-long/loglik_k5000_all_best.json
# Paired with its VAE (../fashion-vae-long-ft) on the same images:
# python -c "import numpy as n; a=n.load('../fashion-vae-long-ft/loglik_k1000_all_best_examples.npz'); b=n.load('loglik_k1000_all_best_examples.npz'); assert (a['index']==b['index']).all(); d=b['log_likelihood']-a['log_likelihood']; print(d.mean(), d.std(ddof=1)/len(d)**.5, (d>0).mean())"
