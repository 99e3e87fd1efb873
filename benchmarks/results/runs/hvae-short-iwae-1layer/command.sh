# eighth session, the one-layer control at the same budget, run right after hvae-short-iwae on the same machine
pyro-vae train --config configs/binarized-mnist-iwae-recipe.toml --data-dir /work/shared/data/binarized_mnist --epochs 5 --train-limit 10000 --no-progress --run-dir hvae-short-iwae-1layer
pyro-vae evaluate hvae-short-iwae-1layer --k 1000 --limit 1000 -o hvae-short-iwae-1layer/loglik_k1000_random1000_best.json
