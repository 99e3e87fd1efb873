#!/bin/bash
# docs/results.md, "M1 on grey levels" (nineteenth session): M1+M2 on the codes of the second conv M1 (labels19-t10k-m1conv-continuous-bernoulli-e150-m1s1),
# 100 labels, seed 0; otherwise as labels19-t10k-m1conv-m1m2-sample-100-e400-s0. Code at 40d0164, one torch thread.
R=~/pyro-vae-runs/labels19; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-40d0164/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model m1m2 --m1-run $R/t10k-m1conv-continuous-bernoulli-e150-m1s1 --dataset mnist-t10k --labels 100 --latent-dim 16 \
  --hidden-dims 500 --epochs 400 --seed 0 --m1-codes sample --figures false --no-progress --run-dir $R/t10k-m1conv-m1s1-m1m2-sample-100-e400-s0
$PY -m pyro_vae.cli evaluate $R/t10k-m1conv-m1s1-m1m2-sample-100-e400-s0 --label-fidelity     # label_fidelity.json
