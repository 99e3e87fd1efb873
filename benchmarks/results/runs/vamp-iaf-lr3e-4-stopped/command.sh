#!/bin/bash
# The first try at the VampPrior + IAF run (#19, ninth session), at 3e-4: validation log p(x) -86.79 and -86.80 after
# epochs 1 and 2 (the source vampprior-ft: -86.47), so it was stopped by SIGTERM in epoch 3 and rerun at 1e-4 (vamp-iaf).
export PYTHONPATH=/root/pyro-vae-runs/loglik9/code-e78a13c/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYRO_VAE_SHARED_DATA=/work/shared/data
cd /root/pyro-vae-runs/loglik9
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-e78a13c/configs/binarized-mnist-vampprior.toml \
  --data-dir /work/shared/data --run-dir vamp-iaf --init-from /root/pyro-vae-runs/loglik7/vampprior-ft \
  --flow iaf --flow-steps 4 --objective iwae --k 5 --kl-warmup-epochs 0 --learning-rate 3e-4 --epochs 10 --no-progress
