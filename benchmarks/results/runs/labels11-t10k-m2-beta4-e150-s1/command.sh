#!/bin/bash
# #14 (eleventh session): the seventh session's M2 --beta 4 recipe on mnist-t10k (100 labels, seed 1) for 150 epochs
# instead of 20 (run-m2-long.sh 1); the best epoch by validation accuracy, the test split scored once, the supervised
# baseline with the same 150-epoch budget; then label fidelity. About 5-8 CPU s an epoch. Code at 3423551.
export PYTHONPATH=/root/pyro-vae-runs/loglik11/code-3423551/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/labels11
/work/main/.venv/bin/python -m pyro_vae.cli train --model m2 --labels 100 --dataset mnist-t10k --data-dir /work/shared/data \
  --latent-dim 32 --hidden-dims 512,256 --epochs 150 --beta 4 --seed 1 --run-dir t10k-m2-beta4-e150-s1 --figures false --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate t10k-m2-beta4-e150-s1 --label-fidelity
