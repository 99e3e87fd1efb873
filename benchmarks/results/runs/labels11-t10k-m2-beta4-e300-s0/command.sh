#!/bin/bash
# #14 (eleventh session): the 150-epoch run labels11-t10k-m2-beta4-e150-s0 carried on to 300 epochs: a copy of its run
# directory resumed with --epochs 300 (the learning rate is constant, so this is the 300-epoch run; metrics.csv holds
# all 300 epochs); the supervised baseline is trained again with the 300-epoch budget; then label fidelity. train.log
# is the 150-epoch run's output followed by the resumed run's. Code at 3423551 (run-m2-long.sh 0, run-m2-more.sh 0).
export PYTHONPATH=/root/pyro-vae-runs/loglik11/code-3423551/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/labels11
/work/main/.venv/bin/python -m pyro_vae.cli train --model m2 --labels 100 --dataset mnist-t10k --data-dir /work/shared/data \
  --latent-dim 32 --hidden-dims 512,256 --epochs 150 --beta 4 --seed 0 --run-dir t10k-m2-beta4-e150-s0 --figures false --no-progress
cp -r t10k-m2-beta4-e150-s0 t10k-m2-beta4-e300-s0
/work/main/.venv/bin/python -m pyro_vae.cli train --resume t10k-m2-beta4-e300-s0 --epochs 300 --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate t10k-m2-beta4-e300-s0 --label-fidelity
