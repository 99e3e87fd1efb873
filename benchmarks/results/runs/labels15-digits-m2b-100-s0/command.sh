#!/bin/bash
# docs/results.md, "Real handwritten digits" table (fifteenth session): the first session's row rerun with the
# code at 2be6b31 (snapshot code-2be6b31), one torch thread, another process on the other core.
R=~/pyro-vae-runs/labels15; T="--dataset mnist-t10k --data-dir /work/shared/data --no-progress"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-2be6b31/src
cd $R/code-2be6b31
/work/main/.venv/bin/python -m pyro_vae.cli train --model m2 --labels 100 $T --latent-dim 32 --hidden-dims 512,256 --epochs 30 --labelled-weight balanced --alpha 50 --seed 0 --run-dir $R/digits-m2b-100-s0
