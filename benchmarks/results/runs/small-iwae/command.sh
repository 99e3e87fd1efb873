#!/bin/bash
# VAE vs IWAE vs IWAE-DReG (K=5), same network, data, epochs and selection; code at commit aec0fee.
export PYTHONPATH=/root/pyro-vae-runs/loglik-priors/code-aec0fee/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYRO_VAE_SHARED_DATA=/work/shared/data
cd /root/pyro-vae-runs/loglik-priors
for obj in analytic-kl iwae iwae-dreg; do
  nice -n 10 /work/main/.venv/bin/python -m pyro_vae.cli train --dataset binarized-mnist --data-dir /work/shared/data \
    --latent-dim 50 --hidden-dims 200,200 --activation tanh --train-limit 10000 --epochs 12 --batch-size 100 \
    --learning-rate 1e-3 --objective $obj --k 5 --select-by valid-loglik --select-k 100 --select-examples 1000 \
    --seed 0 --run-dir small-$obj --no-progress
done
for obj in analytic-kl iwae iwae-dreg; do
  nice -n 10 /work/main/.venv/bin/python -m pyro_vae.cli evaluate small-$obj --k 1000 --limit 1000 -o small-$obj/loglik_k1000_first1000.json
done
