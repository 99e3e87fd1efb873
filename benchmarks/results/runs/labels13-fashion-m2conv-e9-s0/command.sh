#!/bin/bash
# #14 (thirteenth session): as labels13-fashion-m2-e9-s0 with a convolutional classifier q(y | x)
# (--classifier-network conv: 4x4 stride-2 convolutions of 32 and 64 channels, a dense layer of 512, the logits);
# the supervised baseline trains the same conv classifier. 9 epochs, the epochs of the comparison with Pyro's
# ss_vae_M2.py. Code at c1fb170; about 80 CPU s an epoch beside another run.
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
pyro-vae train --config configs/fashion-mnist-m2.toml --labels 100 --epochs 9 --classifier-network conv --seed 0 \
  --figures false --run-dir runs/fashion-m2conv-e9-s0
