#!/bin/bash
# VampPrior recipe (configs/binarized-mnist-vampprior.toml) at commit 2bde5a0, KL warm-up shortened to 20 epochs.
# From epoch 3 on (23 Nov, sixth session) resumed with code 19cbe53: the mixture prior computed by matrix products (the same density).
# Stopped by SIGTERM during epoch 99 (seventh session, 22:05 UTC) so its best checkpoint (epoch 97) could seed vampprior-ft; resumable as above.
export PYTHONPATH=/root/pyro-vae-runs/loglik6/code-19cbe53/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYRO_VAE_SHARED_DATA=/work/shared/data
cd /root/pyro-vae-runs/loglik
if [ -f vampprior/checkpoint_last.pt ]; then
  exec /work/main/.venv/bin/python -m pyro_vae.cli train --resume vampprior --no-progress
else
  exec /work/main/.venv/bin/python -m pyro_vae.cli train --config code-2bde5a0/configs/binarized-mnist-vampprior.toml --data-dir /work/shared/data --run-dir vampprior --kl-warmup-epochs 20 --no-progress
fi
