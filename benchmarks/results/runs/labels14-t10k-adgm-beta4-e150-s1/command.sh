#!/bin/bash
# #14 (fourteenth session): the ADGM (Maaløe et al. 2016) with the eleventh session's long M2 --beta 4 recipe:
# mnist-t10k, 100 labels, MLPs 512-256 in every network, z of 32, a of 100 (the default), alpha 20,000, natural
# weighting, beta 4 on z, 150 epochs, seed 1 (the second seed of labels13-t10k-adgm-beta4-e150-s0, same code);
# selected by validation accuracy, test scored once; then label fidelity. 4,514 s of wall time for training, with
# three to four processes on the 2 cores. Code at 3423551 (the library as at main 1d08fd9; run-adgm-long.sh 1).
export PYTHONPATH=/root/pyro-vae-runs/loglik11/code-3423551/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/labels12
/work/main/.venv/bin/python -m pyro_vae.cli train --model adgm --labels 100 --dataset mnist-t10k --data-dir /work/shared/data \
  --latent-dim 32 --hidden-dims 512,256 --epochs 150 --beta 4 --seed 1 --run-dir t10k-adgm-beta4-e150-s1 \
  --figures false --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate t10k-adgm-beta4-e150-s1 --label-fidelity
