#!/bin/bash
# K=5000 on 1,000 random test images (seed 0), the two best checkpoints of the IWAE comparison; code at 1cf125d.
export PYTHONPATH=/root/pyro-vae-runs/loglik-priors/code-1cf125d/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYRO_VAE_SHARED_DATA=/work/shared/data
cd /root/pyro-vae-runs/loglik-priors
for run in ft-iwae-dreg vae-recipe; do
  /work/main/.venv/bin/python -m pyro_vae.cli evaluate $run --checkpoint best --k 5000 --limit 1000 -o $run/loglik_k5000_random1000_best.json
  /work/main/.venv/bin/python -m pyro_vae.cli evaluate $run --checkpoint best --k 1000 --limit 1000 -o $run/loglik_k1000_random1000_best.json
done
