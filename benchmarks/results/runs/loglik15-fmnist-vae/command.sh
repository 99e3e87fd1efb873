#!/bin/bash
# docs/results.md, Fashion-MNIST (dynamically binarized), "The first session's run" VAE row (fifteenth session):
# rerun with the code at 2be6b31 (the first session's run files were never committed), one torch thread, two to
# three other processes on the 2 cores; then scored as the table does.
R=~/pyro-vae-runs/labels15; r=$R/fmnist-vae; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-2be6b31/src
cd $R/code-2be6b31
$PY -m pyro_vae.cli train --config configs/fashion-mnist-vae.toml --no-progress --run-dir $r
$PY -m pyro_vae.cli evaluate $r --k 1000 -o $r/loglik_k1000.json
$PY -m pyro_vae.cli evaluate $r --k 1000 --limit 1000 --subset first -o $r/loglik_k1000_first1000.json
$PY -m pyro_vae.cli evaluate $r --k 5000 --limit 1000 --subset first -o $r/loglik_k5000_first1000.json
# also, with evaluate's default random subset of 1,000 test images (seed 0), kept as loglik_k5000_random1000.json:
#   $PY -m pyro_vae.cli evaluate $r --k 5000 --limit 1000 -o $r/loglik_k5000_random1000.json
