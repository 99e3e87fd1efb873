#!/bin/bash
# Fashion-MNIST VAE, long (#19, eleventh session): configs/fashion-mnist-vae-long.toml (the recipe's network and
# selection with the published schedule: constant Adam 5e-4, KL warm-up over 100 epochs, up to 1000 epochs, early stop
# after 50 without a better validation log p(x), K=100 on 1,000 fixed validation images), the same settings as the
# flags below. Stopped (SIGTERM) and resumed twice to change its thread count (epochs 36-81 on 2 torch threads, the
# rest on 1); this directory is a copy taken after epoch 238 (its best then, validation -227.82; 1,665 CPU s of
# training epochs), the start of fashion-vae-long-ft. The run itself went on to epoch 249 (-227.76) and was stopped to
# free the cores; `train --resume` carries it on. Code at 3423551 (run-fashion-vae-long.sh).
export PYTHONPATH=/root/pyro-vae-runs/loglik11/code-3423551/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/loglik11
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-3423551/configs/fashion-mnist-vae-recipe.toml \
  --lr-decay 1.0 --kl-warmup-epochs 100 --epochs 1000 --patience 50 --run-dir fashion-vae-long --figures false --no-progress
# (resumed with: /work/main/.venv/bin/python -m pyro_vae.cli train --resume fashion-vae-long --no-progress)
cp -r fashion-vae-long probe-snap-240
