#!/bin/bash
# docs/results.md, Fashion-MNIST M1+M2 (seventeenth session): labels17-fashion-m1m2-sample-100-e100-s1 (its command.sh)
# copied and resumed to 200 epochs (train --resume continues exactly; the learning rate is constant), so this is the
# 200-epoch run with its baselines at a 200-epoch budget. Code at 0ee0832; the two seeds ran side by side.
R=~/pyro-vae-runs/labels17; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-0ee0832/src
cp -r $R/fashion-m1m2-sample-100-e100-s1 $R/fashion-m1m2-sample-100-e200-s1
$PY -m pyro_vae.cli train --resume $R/fashion-m1m2-sample-100-e200-s1 --epochs 200 --no-progress
$PY -m pyro_vae.cli evaluate $R/fashion-m1m2-sample-100-e200-s1 --label-fidelity     # label_fidelity.json
