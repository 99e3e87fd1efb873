#!/bin/bash
# VampPrior (500 pseudo-inputs started at training images) added to ft2-iwae-dreg's networks, trained with IWAE-DReG K=5.
export PYTHONPATH=/root/pyro-vae-runs/loglik6/code-19cbe53/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYRO_VAE_SHARED_DATA=/work/shared/data
cd /root/pyro-vae-runs/loglik6
if [ -f vamp-iwae-dreg/checkpoint_last.pt ]; then
  exec /work/main/.venv/bin/python -m pyro_vae.cli train --resume vamp-iwae-dreg --no-progress
else
  exec /work/main/.venv/bin/python -m pyro_vae.cli train --config code-19cbe53/configs/binarized-mnist-vampprior.toml --data-dir /work/shared/data --run-dir vamp-iwae-dreg --init-from /root/pyro-vae-runs/loglik-priors/ft2-iwae-dreg --pseudo-init data --objective iwae-dreg --k 5 --kl-warmup-epochs 0 --epochs 300 --no-progress
fi
