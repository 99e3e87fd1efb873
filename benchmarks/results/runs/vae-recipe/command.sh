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
# Session 4 (continued): the run trained on to epoch 162 (metrics.csv) and was ended with the session;
# its best checkpoint is then epoch 122 (validation log p(x) -89.81 at K=100).
# Session 5: that checkpoint scored on all 10,000 test images with the code of 1cf125d
# (loglik_k1000_all_best.json, per-image values in loglik_k1000_all_best_examples.npz):
#   PYTHONPATH=code-1cf125d/src pyro-vae evaluate vae-recipe --checkpoint best --k 1000 -o vae-recipe/loglik_k1000_all_best.json
# and it is the starting point of ../ft-iwae-dreg and ../ft-analytic-kl (--init-from vae-recipe).
