#!/bin/bash
# #14 (fourteenth session): the Fashion-MNIST M2 row of docs/results.md's first M2 table (1000 labels, natural
# weighting, 20 epochs) whose run files were never committed, rerun with the code at daeb383 (seed 0).
pyro-vae train --config configs/fashion-mnist-m2.toml --labels 1000 --seed 0 --figures false \
    --run-dir runs/fashion-m2-natural-1000-s0
