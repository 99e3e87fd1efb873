#!/bin/bash
# docs/results.md, "z_2 of 50" (twentieth session): the 400-epoch run t10k-m1conv-m1m2-sample-100-e400-z50-s1 (its command.sh)
# copied and resumed to 800 epochs (a resumed run continues exactly); selected by validation accuracy over all 800 epochs, test scored
# once; the baselines get the same 800 epochs of steps. Code at ab14070, one torch thread. train.log is the resumed session's.
R=~/pyro-vae-runs/labels20; PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$R/code-ab14070/src PYRO_VAE_DATA=/work/shared/data
cp -a $R/t10k-m1conv-m1m2-sample-100-e400-z50-s1 $R/t10k-m1conv-m1m2-sample-100-e800-z50-s1 && rm -f $R/t10k-m1conv-m1m2-sample-100-e800-z50-s1/label_fidelity.json
$PY -m pyro_vae.cli train --resume $R/t10k-m1conv-m1m2-sample-100-e800-z50-s1 --epochs 800 --no-progress
$PY -m pyro_vae.cli evaluate $R/t10k-m1conv-m1m2-sample-100-e800-z50-s1 --label-fidelity     # label_fidelity.json
