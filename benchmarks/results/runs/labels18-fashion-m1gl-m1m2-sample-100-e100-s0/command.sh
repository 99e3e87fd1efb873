#!/bin/bash
# docs/results.md, "M1 on grey levels", the Gaussian M1 aside (eighteenth session): M1+M2 on the codes of
# labels18-fashion-m1-gaussian-learned-e60, 100 labels, seed 0, drawn codes, M2 as in the other labels18 rows;
# started for 100 epochs and stopped by hand (SIGTERM) during epoch 65: no test accuracy, no summary.json;
# metrics.csv holds its 64 epochs' validation accuracy. Code at c28b57c, one torch thread.
R=~/pyro-vae-runs/labels18; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-m1bin/src PYRO_VAE_DATA=/work/shared/data
$PY -m pyro_vae.cli train --model m1m2 --m1-run $R/fashion-m1-gaussian-learned-e60 --dataset fashion-mnist --labels 100 \
  --latent-dim 16 --hidden-dims 500 --epochs 100 --seed 0 --m1-codes sample --figures false --no-progress \
  --run-dir $R/fashion-m1gl-m1m2-sample-100-e100-s0
