#!/bin/bash
# IAF guide (#19, seventh session): ft2-iwae-dreg's best checkpoint with 4 IAF steps added (they start as the identity,
# code b167753), trained on with the IWAE bound K=5 at ft2's rate 1e-4, a fresh Adam. Control: ft2-iwae-dreg itself,
# whose validation log p(x) (-89.03) peaked at epoch 3 of 10 at this rate without a flow.
# A first try with --objective iwae-dreg did 182 steps in 9.5 CPU min (DReG inverts every IAF step, 40 passes each;
# the run now says so) and was stopped. This run was stopped by SIGTERM during epoch 4: no gain in 3 epochs
# (validation -89.05, -89.04, -89.03). ~75 CPU s an epoch at load 3.
export PYTHONPATH=/root/pyro-vae-runs/loglik7/code-b167753/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYRO_VAE_SHARED_DATA=/work/shared/data
cd /root/pyro-vae-runs/loglik7
/work/main/.venv/bin/python -m pyro_vae.cli train --config code-b167753/configs/binarized-mnist-vae-recipe.toml \
  --data-dir /work/shared/data --run-dir iaf-ft-iwae --init-from /root/pyro-vae-runs/loglik-priors/ft2-iwae-dreg \
  --flow iaf --flow-steps 4 --objective iwae --k 5 --kl-warmup-epochs 0 --learning-rate 1e-4 --epochs 30 --no-progress
