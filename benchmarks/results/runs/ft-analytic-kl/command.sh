#!/bin/bash
# Fine-tuning the VAE recipe run's best checkpoint (epoch 122) for 20 epochs with a fresh Adam:
# (no KL warm-up) OBJ=iwae-dreg (K=5) against the control OBJ=analytic-kl (the recipe's own objective); code at 1cf125d.
export PYTHONPATH=/root/pyro-vae-runs/loglik-priors/code-1cf125d/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYRO_VAE_SHARED_DATA=/work/shared/data
cd /root/pyro-vae-runs/loglik-priors
OBJ=$1; RUN=ft-$OBJ; EPOCHS=${2:-20}
if [ -f $RUN/checkpoint_last.pt ]; then
  exec nice -n 5 /work/main/.venv/bin/python -m pyro_vae.cli train --resume $RUN --epochs $EPOCHS --no-progress
else
  K=""; [ "$OBJ" != analytic-kl ] && K="--k 5"
  exec nice -n 5 /work/main/.venv/bin/python -m pyro_vae.cli train --config code-1cf125d/configs/binarized-mnist-vae-recipe.toml \
    --data-dir /work/shared/data --run-dir $RUN --init-from vae-recipe --objective $OBJ $K --kl-warmup-epochs 0 --epochs $EPOCHS --no-progress
fi
# Session 5, run as: run-finetune.sh iwae-dreg; then run-finetune.sh analytic-kl (the control, ../ft-analytic-kl).
# The IWAE run was reniced to -5 after its first epoch (the machine's load was about 10).
# Its best checkpoint (epoch 9) scored on all 10,000 test images:
#   PYTHONPATH=code-1cf125d/src pyro-vae evaluate ft-iwae-dreg --checkpoint best --k 1000 -o ft-iwae-dreg/loglik_k1000_all_best.json
# The paired difference with ../vae-recipe/loglik_k1000_all_best_examples.npz (same images, same seed):
#   python -c "import numpy as n; a=n.load('ft-iwae-dreg/loglik_k1000_all_best_examples.npz'); b=n.load('vae-recipe/loglik_k1000_all_best_examples.npz'); d=a['log_likelihood']-b['log_likelihood']; print(d.mean(), d.std(ddof=1)/len(d)**.5)"
