"""Data-parallel training: two processes on 127.0.0.1 (gloo) take the same steps as one
process with the same global batch and the same draws: the same binarization of every
image (drawn for the global batch, so it does not depend on the split) and, for the
latent noise, each shard with the RNG stream its rank had."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyro
import torch
from pyro import poutine

from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.data.datasets import binarize_batch, load_dataset
from pyro_vae.inference.checkpoint import LAST, load_checkpoint
from pyro_vae.inference.distributed import DistributedContext
from pyro_vae.inference.objectives import make_objective
from pyro_vae.inference.train import make_adam

SEED, BATCH, LIMIT = 3, 16, 70  # 70 images: the last global batch (6) splits 3 + 3
MODEL = ModelConfig(latent_dim=3, hidden_dims=[32])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, processes=2):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    env.pop("CI", None)
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
               "--nnodes=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}",
               "-m", "pyro_vae.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _reference_parameters(idx_dir, steps_epochs: int):
    """One process, the same global batches, each shard with the RNG stream its rank had."""
    pyro.set_rng_seed(SEED)
    data = load_dataset("idx", str(idx_dir), "dynamic", SEED, LIMIT)
    model, guide = build_vae(MODEL, data.image_shape)
    params = [*model.parameters(), *guide.parameters()]
    optimizer = make_adam(params, 1e-3)
    objective = make_objective("analytic-kl")
    streams = []
    for rank in range(2):  # as Trainer.__init__: reseed per rank, then one probe trace of the guide
        torch.manual_seed(SEED + rank)
        poutine.trace(guide).get_trace(data.train.images[:1])
        streams.append(torch.get_rng_state())
    order_generator = torch.Generator().manual_seed(SEED)
    noise_generator = torch.Generator().manual_seed(SEED + 7919)  # one process's binarization stream
    for _ in range(steps_epochs):
        order = torch.randperm(len(data.train), generator=order_generator)
        for start in range(0, len(order), BATCH):
            optimizer.zero_grad(set_to_none=True)
            x = binarize_batch(data.train.images[order[start:start + BATCH]], noise_generator)
            for rank, rows in enumerate(torch.arange(len(x)).tensor_split(2)):
                torch.set_rng_state(streams[rank])
                objective.differentiable_loss(model, guide, x[rows]).backward()
                streams[rank] = torch.get_rng_state()
            optimizer.step()
        # Rank 1 draws nothing more at the epoch's end; rank 0 evaluates the validation set.
        torch.set_rng_state(streams[0])
        from pyro_vae.inference.train import evaluate_elbo
        evaluate_elbo(model, guide, data.valid.images, analytic_kl=True)
        streams[0] = torch.get_rng_state()
    return {**{f"model.{k}": v for k, v in model.state_dict().items()},
            **{f"guide.{k}": v for k, v in guide.state_dict().items()}}


def test_two_processes_match_one_process_with_the_same_draws(idx_dir, tmp_path):
    run = tmp_path / "ddp"
    args = ["train", "--dataset", "idx", "--data-dir", str(idx_dir), "--binarize", "dynamic", "--train-limit",
            str(LIMIT), "--latent-dim", "3", "--hidden-dims", "32", "--batch-size", str(BATCH), "--seed",
            str(SEED), "--objective", "analytic-kl", "--no-progress", "--run-dir", str(run)]
    result = _torchrun(args + ["--epochs", "2"])
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = load_checkpoint(run / LAST)
    got = {**{f"model.{k}": v for k, v in checkpoint["model"].items()},
           **{f"guide.{k}": v for k, v in checkpoint["guide"].items()}}
    want = _reference_parameters(idx_dir, 2)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-5, rtol=1e-4), name
    # The steps really moved the parameters (the comparison is not of two initial states).
    pyro.set_rng_seed(SEED)
    initial, _ = build_vae(MODEL, (1, 28, 28))
    assert not torch.allclose(initial.decoder.body[0][0].weight, checkpoint["model"]["decoder.body.0.0.weight"])
    # Rank 0 wrote the run directory, once.
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["epochs"] == 2
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    assert len(checkpoint["rng_ranks"]) == 2 and checkpoint["world_size"] == 2

    # Every rank resumes from rank 0's files; a different number of processes is refused.
    resumed = _torchrun(["train", "--resume", str(run), "--epochs", "3", "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(run / LAST)["epoch"] == 3
    single = subprocess.run([sys.executable, "-m", "pyro_vae.cli", "train", "--resume", str(run), "--epochs", "4"],
                            capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src")))
    assert single.returncode == 2 and "resume it with the same number" in single.stderr


def test_each_rank_binarizes_its_rows_of_the_global_batch():
    """The rows a rank binarizes are the rows it trains on (``shard_rows`` is ``shard``'s
    slice), for every split of a batch, uneven ones included."""
    for n in (1, 5, 16, 70):
        rows = torch.randperm(100)[:n]
        for world in (1, 2, 3, 4):
            parts = [DistributedContext(rank, world) for rank in range(world)]
            assert torch.equal(torch.cat([rows[ctx.shard_rows(n)] for ctx in parts]), rows)
            for ctx in parts:
                assert torch.equal(rows[ctx.shard_rows(n)], ctx.shard(rows))
