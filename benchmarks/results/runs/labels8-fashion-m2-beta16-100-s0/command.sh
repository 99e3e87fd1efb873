#!/bin/bash
# #14 (eighth session): M2 on Fashion-MNIST, 100 labels, configs/fashion-mnist-m2.toml with --beta 16 (KL weight on z alone), 12 epochs
# code: branch labels8 at 23c0a78 (the --split commit; rebased since), copied to code-src
export PYTHONPATH=/root/pyro-vae-runs/labels8/code-src/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/labels8
nice -n 10 /work/main/.venv/bin/python -m pyro_vae.cli train --config fashion-mnist-m2.toml --labels 100 --beta 16 --epochs 12 --seed 0 --run-dir fashion-m2-beta16-100-s0 --no-progress
# stopped by a SIGTERM (not sent by this session) after epoch 12, before the baseline and summary.json; the script
# went on to this evaluation of the best checkpoint (epoch 1, by validation accuracy; the resume below changes no checkpoint):
nice -n 10 /work/main/.venv/bin/python -m pyro_vae.cli evaluate fashion-m2-beta16-100-s0 --label-fidelity
# then finished by resuming (no epoch left to train: the baseline and the test accuracy, once):
nice -n 10 /work/main/.venv/bin/python -m pyro_vae.cli train --resume fashion-m2-beta16-100-s0 --epochs 12 --no-progress
nice -n 10 /work/main/.venv/bin/python -m pyro_vae.cli evaluate fashion-m2-beta16-100-s0 --label-fidelity --checkpoint last -o fashion-m2-beta16-100-s0/label_fidelity_last.json
