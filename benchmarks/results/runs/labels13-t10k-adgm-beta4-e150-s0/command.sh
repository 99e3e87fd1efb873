#!/bin/bash
# #14 (thirteenth session): the ADGM (Maaløe et al. 2016) with the eleventh session's long M2 --beta 4 recipe:
# mnist-t10k, 100 labels, MLPs 512-256 in every network, z of 32, a of 100 (the default), alpha 20,000, natural
# weighting, beta 4 on z, 150 epochs, seed 0; selected by validation accuracy, test scored once; then label fidelity.
# About 19 CPU s an epoch beside another run (2,827 CPU s in all). Code at 3423551 (the library as at main 1d08fd9;
# run-adgm-long.sh 0).
export PYTHONPATH=/root/pyro-vae-runs/loglik11/code-3423551/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/labels12
/work/main/.venv/bin/python -m pyro_vae.cli train --model adgm --labels 100 --dataset mnist-t10k --data-dir /work/shared/data \
  --latent-dim 32 --hidden-dims 512,256 --epochs 150 --beta 4 --seed 0 --run-dir t10k-adgm-beta4-e150-s0 \
  --figures false --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate t10k-adgm-beta4-e150-s0 --label-fidelity
