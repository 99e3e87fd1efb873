#!/bin/bash
# IWAE K=50 row (#19, eighth session): the IWAE-DReG K=5 model ft2-iwae-dreg (its best checkpoint, epoch 3), trained on
# with IWAE-DReG at K=50 at 1e-4 and a fresh Adam, no KL warm-up; selected by validation log p(x) (K=100, 1,000 images).
# ~300 CPU s an epoch (10x K=5's); validation -88.94 after epoch 1 (source -89.03), -88.95 after epoch 2, so it was
# stopped by SIGTERM during epoch 3 and its best checkpoint (epoch 1) scored. Code at 54109a1.
export PYTHONPATH=/root/pyro-vae-runs/loglik8/code-54109a1/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYRO_VAE_SHARED_DATA=/work/shared/data
cd /root/pyro-vae-runs/loglik8
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-54109a1/configs/binarized-mnist-vae-recipe.toml \
  --data-dir /work/shared/data --run-dir iwae50-ft --init-from /root/pyro-vae-runs/loglik-priors/ft2-iwae-dreg \
  --objective iwae-dreg --k 50 --kl-warmup-epochs 0 --learning-rate 1e-4 --epochs 12 --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate iwae50-ft --checkpoint best --k 1000 -o iwae50-ft/loglik_k1000_all_best.json
# K=5000 on 1,000 random test images (seed 0), for the K=1000 -> K=5000 gain on the same images (+0.310 ± 0.037):
/work/main/.venv/bin/python -m pyro_vae.cli evaluate iwae50-ft --checkpoint best --k 5000 --limit 1000 -o iwae50-ft/loglik_k5000_random1000_best.json
# Paired figures (same images): K=1000 against the K=5 model's K=1000 on all 10,000 (+0.139 ± 0.008), and K=5000 against
# its K=5000 on the 1,000 (+0.157 ± 0.038):
# python -c "import numpy as n; a=n.load('iwae50-ft/loglik_k1000_all_best_examples.npz'); b=n.load('ft2-iwae-dreg/loglik_k1000_all_best_examples.npz'); d=a['log_likelihood']-b['log_likelihood']; print(d.mean(), d.std(ddof=1)/len(d)**.5)"
# K=5000 on all 10,000 test images (2,157 s at load 2-4; ~/pyro-vae-runs/loglik8/run-eval-k5000-all.sh iwae50-ft):
/work/main/.venv/bin/python -m pyro_vae.cli evaluate iwae50-ft --checkpoint best --k 5000 -o iwae50-ft/loglik_k5000_all_best.json
# Paired against the K=5 model at K=5000 (+0.145 ± 0.007): as above with loglik_k5000_all_best_examples.npz on both sides.
