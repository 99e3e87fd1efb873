#!/bin/bash
# #14 (twelfth session): the eleventh session's long M2 --beta 4 recipe (mnist-t10k, 100 labels, MLP encoder and
# decoder 784-512-256, z of 32, alpha 20,000, natural weighting, 150 epochs, seed 1) with a convolutional classifier
# q(y | x) (--classifier-network conv: 4x4 stride-2 convolutions of 32 and 64 channels, a dense layer of 512, the
# logits); the supervised baseline trains the same conv classifier (150-epoch budget, its own learning rate and
# epoch by validation). Selected by validation accuracy, test scored once; then label fidelity. About 10 CPU s an
# epoch; the baseline's three learning rates about 27 minutes more (wall time, beside another run). Code at c616e65 (run-m2-conv.sh 1).
# Started in the twelfth session and stopped by its end after epoch 19; resumed in the thirteenth with
#   pyro-vae train --resume t10k-m2conv-beta4-e150-s1 --no-progress
# (a resumed run equals an uninterrupted one: tests/test_train.py checks it for a VAE). Epochs 20-150 and the
# baseline ran then.
export PYTHONPATH=/root/pyro-vae-runs/labels12/code-c616e65/src OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd /root/pyro-vae-runs/labels12
/work/main/.venv/bin/python -m pyro_vae.cli train --model m2 --labels 100 --dataset mnist-t10k --data-dir /work/shared/data \
  --latent-dim 32 --hidden-dims 512,256 --classifier-network conv --epochs 150 --beta 4 --seed 1 \
  --run-dir t10k-m2conv-beta4-e150-s1 --figures false --no-progress
/work/main/.venv/bin/python -m pyro_vae.cli evaluate t10k-m2conv-beta4-e150-s1 --label-fidelity
