#!/bin/bash
# The control of stage 2: the VAE recipe's epoch 122 at the same lower learning rate (1e-4), a fresh Adam,
# 10 epochs of its own ELBO (the stage-1 control at 5e-4 did not improve); code at fed7670.
export PYTHONPATH=/root/pyro-vae-runs/loglik-priors/code-fed7670/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYRO_VAE_SHARED_DATA=/work/shared/data
cd /root/pyro-vae-runs/loglik-priors
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-fed7670/configs/binarized-mnist-vae-recipe.toml \
  --data-dir /work/shared/data --run-dir ft2-analytic-kl --init-from vae-recipe --objective analytic-kl \
  --kl-warmup-epochs 0 --learning-rate 1e-4 --epochs 10 --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate ft2-analytic-kl --checkpoint best --k 1000 -o ft2-analytic-kl/loglik_k1000_all_best.json
# Paired difference (same images): python -c "import numpy as n; a=n.load(\"ft2-iwae-dreg/loglik_k1000_all_best_examples.npz\"); b=n.load(\"ft2-analytic-kl/loglik_k1000_all_best_examples.npz\"); d=a[\"log_likelihood\"]-b[\"log_likelihood\"]; print(d.mean(), d.std(ddof=1)/len(d)**.5)"
# K=5000 on all 10,000 test images (seventh session, code at b167753; 2,909 s): ~/pyro-vae-runs/loglik7/run-eval-vae-k5000-all.sh, that is
# PYTHONPATH=.../code-b167753/src python -m pyro_vae.cli evaluate ft2-analytic-kl --checkpoint best --k 5000 -o ft2-analytic-kl/loglik_k5000_all_best.json
