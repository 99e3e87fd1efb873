#!/bin/bash
# VampPrior + IAF guide (#19, ninth session): vampprior-ft's best checkpoint (epoch 7; VampPrior, 500 pseudo-inputs,
# gated 300-300, 40-d z, 98 ELBO epochs + 7 of IWAE-DReG K=5 at 1e-4) with 4 IAF steps added to its guide. IAF steps
# start as the identity, so the run starts at vampprior-ft's q(z|x) exactly. Trained on with the IWAE bound K=5
# (--objective iwae: DReG would invert every IAF step, ~20x the cost) at 1e-4, a fresh Adam, 10 epochs (~100 CPU s
# each), selected by validation log p(x) (K=100, 1,000 fixed validation images): best epoch 7, -86.41 (source -86.47).
# A first try at 3e-4 (vamp-iaf-lr3e-4-stopped) lost 0.32 nats of validation log p(x) in its first epoch, did not
# recover in its second, and was stopped by SIGTERM. Code at e78a13c (training, the random-1000 evaluation).
export PYTHONPATH=/root/pyro-vae-runs/loglik9/code-e78a13c/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYRO_VAE_SHARED_DATA=/work/shared/data
cd /root/pyro-vae-runs/loglik9
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-e78a13c/configs/binarized-mnist-vampprior.toml \
  --data-dir /work/shared/data --run-dir vamp-iaf --init-from /root/pyro-vae-runs/loglik7/vampprior-ft \
  --flow iaf --flow-steps 4 --objective iwae --k 5 --kl-warmup-epochs 0 --learning-rate 1e-4 --epochs 10 --no-progress
# K=5000 on the 1,000 random test images (seed 0) that vampprior-ft was scored on at K=5000 (698 s):
/work/main/.venv/bin/python -m pyro_vae.cli evaluate vamp-iaf --checkpoint best --k 5000 --limit 1000 -o vamp-iaf/loglik_k5000_random1000_best.json
# K=5000 on all 10,000 test images, with the code at 2f6d536 (the evalspeed merge: the same estimate to ~1e-5 nats,
# ~1.5x faster with an IAF guide):
export PYTHONPATH=/root/pyro-vae-runs/loglik9/code-2f6d536/src
/work/main/.venv/bin/python -m pyro_vae.cli evaluate vamp-iaf --checkpoint best --k 5000 -o vamp-iaf/loglik_k5000_all_best.json
# Paired against the VampPrior without the flow on the same images at K=5000 (run from benchmarks/results/runs):
# python -c "import numpy as n; a=n.load('vamp-iaf/loglik_k5000_all_best_examples.npz'); b=n.load('vampprior-ft/loglik_k5000_all_best_examples.npz'); d=a['log_likelihood']-b['log_likelihood']; print(d.mean(), d.std(ddof=1)/len(d)**.5, (d>0).mean())"
# Result (ninth session): -84.90 ± 0.23 at K=5000 on all 10,000 (3,057 s); +0.034 ± 0.006 nats per image over vampprior-ft
# at K=5000 on the same images (better on 53%); on the random 1,000 at K=5000: -84.75 ± 0.73, +0.047 ± 0.019.
