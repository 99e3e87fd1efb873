#!/bin/bash
# Fashion-MNIST VAE row (#19, eighth session): configs/fashion-mnist-vae-recipe.toml from scratch (gated 300-300, 40-d z,
# Adam 5e-4 decayed 2% an epoch, batch 100, KL warm-up 10 epochs, 120 epochs, selected by validation log p(x) K=100 on
# 1,000 fixed validation images), then test log p(x) of the best checkpoint (epoch 116) at K=1000 and K=5000 on all
# 10,000 test images (binarized once with seed 0). 1,942 CPU s of training at load 2-5. Code at 54109a1.
export PYTHONPATH=/root/pyro-vae-runs/loglik8/code-54109a1/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/loglik8
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-54109a1/configs/fashion-mnist-vae-recipe.toml \
  --run-dir fashion-vae-recipe --figures false --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate fashion-vae-recipe --checkpoint best --k 1000 -o fashion-vae-recipe/loglik_k1000_all_best.json
/work/main/.venv/bin/python -m pyro_vae.cli evaluate fashion-vae-recipe --checkpoint best --k 5000 -o fashion-vae-recipe/loglik_k5000_all_best.json
