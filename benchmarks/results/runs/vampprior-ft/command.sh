#!/bin/bash
# VampPrior stage 2 (#19, seventh session): the VampPrior run's best checkpoint (epoch 97 of 98, validation log p(x)
# -87.29 at K=100; a frozen copy vampprior-e98 of ../vampprior), then IWAE-DReG K=5 at 1e-4 with a fresh Adam and no
# KL warm-up (the VAE's stage 2, ft2-iwae-dreg, gained 0.87 nats of test log p(x) this way). Code at b167753.
# Stopped by SIGTERM during epoch 8 (no gain after epoch 1); best epoch 7 (-86.47). ~83 CPU s an epoch at load 3.
export PYTHONPATH=/root/pyro-vae-runs/loglik7/code-b167753/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYRO_VAE_SHARED_DATA=/work/shared/data
cd /root/pyro-vae-runs/loglik7
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-b167753/configs/binarized-mnist-vampprior.toml \
  --data-dir /work/shared/data --run-dir vampprior-ft --init-from /root/pyro-vae-runs/loglik7/vampprior-e98 \
  --objective iwae-dreg --k 5 --kl-warmup-epochs 0 --learning-rate 1e-4 --epochs 30 --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate vampprior-ft --checkpoint best --k 1000 -o vampprior-ft/loglik_k1000_all_best.json
# K=5000 on 1,000 random test images (seed 0), for the K=1000 -> K=5000 gain on the same images (+0.199 ± 0.029):
/work/main/.venv/bin/python -m pyro_vae.cli evaluate vampprior-ft --checkpoint best --k 5000 --limit 1000 -o vampprior-ft/loglik_k5000_random1000_best.json
# Paired gain: python -c "import numpy as n; a=n.load('loglik_k1000_all_best_examples.npz'); b=n.load('loglik_k5000_random1000_best_examples.npz'); p={int(i): j for j, i in enumerate(a['index'])}; d=b['log_likelihood']-a['log_likelihood'][[p[int(i)] for i in b['index']]]; print(d.mean(), d.std(ddof=1)/len(d)**.5)"
# K=5000 on all 10,000 test images (ninth session, code at e78a13c; 4,551 s at load 3-7): -84.93 ± 0.23, +0.201 ± 0.009 over K=1000
# on the same images (~/pyro-vae-runs/loglik9/run-eval-vampprior-k5000.sh, log in eval_k5000_all.log):
/work/main/.venv/bin/python -m pyro_vae.cli evaluate vampprior-ft --checkpoint best --k 5000 -o vampprior-ft/loglik_k5000_all_best.json
