# eighth session, 2-core machine shared with two other training jobs (load 4-5); --data-dir is where the .amat.gz files are
pyro-vae train --config configs/binarized-mnist-hvae.toml --data-dir /work/shared/data/binarized_mnist --epochs 5 --train-limit 10000 --no-progress --run-dir hvae-short-iwae
pyro-vae evaluate hvae-short-iwae --k 1000 --limit 1000 -o hvae-short-iwae/loglik_k1000_random1000_best.json
