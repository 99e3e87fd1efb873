"""Two data-parallel processes with gradient clipping and a decaying learning rate take the
same steps as one process that clips the whole global batch's gradient.

Adam's update hardly changes when every gradient is scaled alike, so only a
scale-sensitive step shows whether the ranks' gradients are summed (right: the loss is a
sum over examples) or averaged: clipping at a norm that some global gradients exceed by
less than a factor of two clips those steps when summed but not when averaged.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pyro
import torch
from pyro import poutine

from pyro_vae.build import build_vae
from pyro_vae.cli import main
from pyro_vae.config import ModelConfig
from pyro_vae.data.datasets import load_dataset
from pyro_vae.inference.checkpoint import LAST, load_checkpoint
from pyro_vae.inference.objectives import make_objective
from pyro_vae.inference.train import evaluate_elbo, make_adam

SEED, BATCH, LIMIT, EPOCHS = 3, 16, 70, 2
CLIP, DECAY, LR = 320.0, 0.5, 3e-3
MODEL = ModelConfig(latent_dim=3, hidden_dims=[32])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reference(idx_dir):
    """One process, the same global batches and draws as the two ranks (each shard with the
    RNG stream its rank had), clipping the summed gradient. Returns the parameters and the
    global gradient norm of every step before clipping."""
    pyro.set_rng_seed(SEED)
    data = load_dataset("idx", str(idx_dir), "static", SEED, LIMIT)
    model, guide = build_vae(MODEL, data.image_shape)
    params = [*model.parameters(), *guide.parameters()]
    optimizer = make_adam(params, LR)
    objective = make_objective("analytic-kl")
    streams = []
    for rank in range(2):  # as the trainer: reseed per rank, then one probe trace of the guide
        torch.manual_seed(SEED + rank)
        poutine.trace(guide).get_trace(data.train.images[:1])
        streams.append(torch.get_rng_state())
    order_generator = torch.Generator().manual_seed(SEED)
    norms = []
    for epoch in range(EPOCHS):
        for group in optimizer.param_groups:
            group["lr"] = LR * DECAY ** epoch
        order = torch.randperm(len(data.train), generator=order_generator)
        for start in range(0, len(order), BATCH):
            optimizer.zero_grad(set_to_none=True)
            for rank, rows in enumerate(order[start:start + BATCH].tensor_split(2)):
                torch.set_rng_state(streams[rank])
                objective.differentiable_loss(model, guide, data.train.images[rows]).backward()
                streams[rank] = torch.get_rng_state()
            norms.append(torch.nn.utils.clip_grad_norm_(params, CLIP).item())
            optimizer.step()
        torch.set_rng_state(streams[0])  # rank 0 alone evaluates the validation set
        evaluate_elbo(model, guide, data.valid.images, analytic_kl=True)
        streams[0] = torch.get_rng_state()
    state = {**{f"model.{k}": v for k, v in model.state_dict().items()},
             **{f"guide.{k}": v for k, v in guide.state_dict().items()}}
    return state, norms


def test_two_processes_with_clipping_match_one_process_clipping_the_summed_gradient(idx_dir, tmp_path):
    want, norms = _reference(idx_dir)
    # The test can tell a sum from a mean: some steps are clipped when summed and would
    # not be when halved, and some are not clipped at all.
    assert any(CLIP < n <= 2 * CLIP for n in norms) and any(n <= CLIP for n in norms), norms

    # The reference above replays each rank's own noise stream (the draws before every
    # example's noise was keyed by its global position); it shows the gradient norms this
    # set-up produces. Now N processes draw what one process draws, so the 2-process run is
    # compared with the same command in one process, which clips the whole batch's gradient.
    run, single = tmp_path / "ddp", tmp_path / "single"
    args = ["train", "--dataset", "idx", "--data-dir", str(idx_dir), "--binarize", "static", "--train-limit",
            str(LIMIT), "--latent-dim", "3", "--hidden-dims", "32", "--batch-size", str(BATCH), "--seed",
            str(SEED), "--objective", "analytic-kl", "--learning-rate", str(LR), "--lr-decay", str(DECAY),
            "--clip-norm", str(CLIP), "--epochs", str(EPOCHS), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    env.pop("CI", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}", "-m", "pyro_vae.cli",
               *args, "--run-dir", str(run)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert main([*args, "--run-dir", str(single)]) == 0

    def parameters(run_dir):
        checkpoint = load_checkpoint(run_dir / LAST)
        return {**{f"model.{k}": v for k, v in checkpoint["model"].items()},
                **{f"guide.{k}": v for k, v in checkpoint["guide"].items()}}

    got, one = parameters(run), parameters(single)
    assert got.keys() == one.keys() == want.keys()
    for name in one:
        assert torch.allclose(got[name], one[name], atol=1e-5, rtol=1e-4), name
