#!/bin/bash
# docs/results.md, static binarized MNIST, first table's IWAE K=5 rows (sixteenth and seventeenth sessions): the first
# session's run (stopped by hand after 160 of 300 epochs, run files never committed) rerun for 160 epochs with the code
# at 4b47d8d, one torch thread, two to four other processes on the 2 cores. The sixteenth session trained epochs 1-89;
# the seventeenth resumed it (train --resume continues exactly) and scored it as the table does. It selects by the
# validation IWAE bound (K=5), which the first session's run predates (it selected by the validation ELBO).
R=~/pyro-vae-runs/labels16; C=$R/code-4b47d8d; r=$R/bmnist-iwae-e160; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$C/src
cd $C
$PY -m pyro_vae.cli train --config configs/binarized-mnist-iwae.toml --data-dir /work/shared/data --epochs 160 --no-progress --run-dir $r
$PY -m pyro_vae.cli train --resume $r --no-progress          # after the sixteenth session's stop, at epoch 89
for ck in best last; do
  $PY -m pyro_vae.cli evaluate $r --checkpoint $ck --k 1000 -o $r/loglik_k1000_$ck.json
  $PY -m pyro_vae.cli evaluate $r --checkpoint $ck --k 1000 --limit 1000 --subset first -o $r/loglik_k1000_first1000_$ck.json
  $PY -m pyro_vae.cli evaluate $r --checkpoint $ck --k 5000 --limit 1000 --subset first -o $r/loglik_k5000_first1000_$ck.json
done
$PY -m pyro_vae.cli evaluate $r --checkpoint last -o $r/elbo_last.json    # the last checkpoint's test ELBO
