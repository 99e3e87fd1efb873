#!/bin/bash
# Fashion-MNIST VAE row (#19, eleventh and twelfth sessions): configs/fashion-mnist-vae-long.toml, i.e. the recipe
# (configs/fashion-mnist-vae-recipe.toml: gated 300-300 MLPs, 40-d z, batch 100, selected by validation log p(x),
# K=100 on 1,000 fixed validation images) with the published schedule: constant Adam 5e-4, KL warm-up over 100
# epochs, up to 1,000 epochs, early stop after 50 without a better validation log p(x). Started in the eleventh
# session, resumed across two sessions with `train --resume`, stopped by SIGTERM after epoch 561 (session time) while
# still improving (best epoch 553, validation -226.90); 4,051 CPU s of training in all (metrics.csv). This directory
# holds a copy taken at the stop (run vae-snap-final here). Code at 3423551 (run-fashion-vae-long.sh).
export PYTHONPATH=/root/pyro-vae-runs/loglik11/code-3423551/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/loglik11
if [ -f fashion-vae-long/config.toml ]; then
  /work/main/.venv/bin/python -m pyro_vae.cli train --resume fashion-vae-long --no-progress
else
  /work/main/.venv/bin/python -m pyro_vae.cli train --config code-3423551/configs/fashion-mnist-vae-recipe.toml \
    --lr-decay 1.0 --kl-warmup-epochs 100 --epochs 1000 --patience 50 \
    --run-dir fashion-vae-long --figures false --no-progress
fi
cp -r fashion-vae-long vae-snap-final   # after stopping it (SIGTERM saves a checkpoint)
