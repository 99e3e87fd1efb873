#!/bin/bash
# Stage 2 of the IWAE-DReG fine-tune: from ft-iwae-dreg's best (epoch 9) at a 5x lower learning rate (1e-4),
# a fresh Adam, 10 epochs (the IWAE paper's schedule also steps the rate down); code at fed7670.
export PYTHONPATH=/root/pyro-vae-runs/loglik-priors/code-fed7670/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYRO_VAE_SHARED_DATA=/work/shared/data
cd /root/pyro-vae-runs/loglik-priors
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-fed7670/configs/binarized-mnist-vae-recipe.toml \
  --data-dir /work/shared/data --run-dir ft2-iwae-dreg --init-from ft-iwae-dreg --objective iwae-dreg --k 5 \
  --kl-warmup-epochs 0 --learning-rate 1e-4 --epochs 10 --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate ft2-iwae-dreg --checkpoint best --k 1000 -o ft2-iwae-dreg/loglik_k1000_all_best.json
# Paired difference (same images): python -c "import numpy as n; a=n.load(\"ft2-iwae-dreg/loglik_k1000_all_best_examples.npz\"); b=n.load(\"ft2-analytic-kl/loglik_k1000_all_best_examples.npz\"); d=a[\"log_likelihood\"]-b[\"log_likelihood\"]; print(d.mean(), d.std(ddof=1)/len(d)**.5)"
# K=5000 on all 10,000 test images (seventh session, code at 7b7ccb7, whose CPU chunks draw other samples than fed7670's;
# 3,317 s at a load of about 2-4): ~/pyro-vae-runs/loglik7/run-eval-k5000-all.sh, that is
# PYTHONPATH=.../code-7b7ccb7/src python -m pyro_vae.cli evaluate ft2-iwae-dreg --checkpoint best --k 5000 -o ft2-iwae-dreg/loglik_k5000_all_best.json
