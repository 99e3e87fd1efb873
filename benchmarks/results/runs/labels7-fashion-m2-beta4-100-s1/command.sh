#!/bin/bash
# #14 (seventh session): M2 on Fashion-MNIST, 100 labels, configs/fashion-mnist-m2.toml with --beta 4 (KL weight on z alone);
# code at 2ff8be4. Started for 20 epochs; stopped by SIGTERM during epoch 13 (session time) and finished at 12 by resuming.
export PYTHONPATH=/root/pyro-vae-runs/labels7/code-src-2ff8be4 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/labels7
/work/main/.venv/bin/python -m pyro_vae.cli train --config fashion-mnist-m2.toml --labels 100 --beta 4 --seed 1 --run-dir fashion-m2-beta4-100-s1 --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli train --resume fashion-m2-beta4-100-s1 --epochs 12 --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate fashion-m2-beta4-100-s1 --label-fidelity
