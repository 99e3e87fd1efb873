#!/bin/bash
# #14 (seventh session): M2 with a KL weight of 4 on z alone, otherwise the labels3 recipe; code at 2ff8be4.
export PYTHONPATH=/root/pyro-vae-runs/labels7/code-src-2ff8be4 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/labels7
/work/main/.venv/bin/python -m pyro_vae.cli train --model m2 --labels 100 --dataset mnist-t10k --data-dir /work/shared/data --latent-dim 32 --hidden-dims 512,256 \
  --epochs 20 --beta 4 --seed 1 --run-dir t10k-m2-beta4-100-s1 --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate t10k-m2-beta4-100-s1 --label-fidelity
