#!/bin/bash
# Long run of configs/binarized-mnist-vae-recipe.toml at commit 62025cd (code snapshot in code-62025cd).
export PYTHONPATH=/root/pyro-vae-runs/loglik-priors/code-62025cd/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYRO_VAE_SHARED_DATA=/work/shared/data
cd /root/pyro-vae-runs/loglik-priors
if [ -f vae-recipe/checkpoint_last.pt ]; then
  exec nice -n 15 /work/main/.venv/bin/python -m pyro_vae.cli train --resume vae-recipe --no-progress
else
  exec nice -n 15 /work/main/.venv/bin/python -m pyro_vae.cli train --config code-62025cd/configs/binarized-mnist-vae-recipe.toml --data-dir /work/shared/data --run-dir vae-recipe --kl-warmup-epochs 10 --no-progress
fi
# Session 4: resumed at epoch 12 with the same code snapshot (nice 5), and while it trained on,
# the best checkpoint (epoch 110) was scored on all 10,000 test images:
#   PYTHONPATH=code-62025cd/src pyro-vae evaluate vae-recipe --k 1000 -o vae-recipe/loglik_k1000_all.json
