"""Data-parallel training: two processes on 127.0.0.1 (gloo) take the same steps as one
process with the same global batch: every example's binarization and latent noise are
drawn for the global batch, so they do not depend on the split."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch

from pyro_vae.build import build_vae
from pyro_vae.cli import main
from pyro_vae.config import ModelConfig
from pyro_vae.inference.checkpoint import LAST, load_checkpoint
from pyro_vae.inference.distributed import DistributedContext

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


def _parameters(run):
    checkpoint = load_checkpoint(run / LAST)
    return {**{f"model.{k}": v for k, v in checkpoint["model"].items()},
            **{f"guide.{k}": v for k, v in checkpoint["guide"].items()}}


def test_two_processes_match_one_process_with_the_same_draws(idx_dir, tmp_path):
    run, single = tmp_path / "ddp", tmp_path / "single"
    args = ["train", "--dataset", "idx", "--data-dir", str(idx_dir), "--binarize", "dynamic", "--train-limit",
            str(LIMIT), "--latent-dim", "3", "--hidden-dims", "32", "--batch-size", str(BATCH), "--seed",
            str(SEED), "--objective", "elbo", "--num-particles", "2", "--no-progress", "--epochs", "2"]
    result = _torchrun(args + ["--run-dir", str(run)])
    assert result.returncode == 0, result.stderr[-3000:]
    # One process, the same command: every example's binarization and latent noise are keyed
    # by its position in the global batch, so the split into two shards changes no draw; what
    # differs is the order of float additions (two partial sums, then the all-reduce).
    assert main([*args, "--run-dir", str(single)]) == 0
    got, want = _parameters(run), _parameters(single)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-5, rtol=1e-4), name
    checkpoint = load_checkpoint(run / LAST)
    history_2, history_1 = checkpoint["history"], load_checkpoint(single / LAST)["history"]
    for a, b in zip(history_2, history_1):
        assert abs(a["train_objective"] - b["train_objective"]) < 1e-3 and abs(a["valid_elbo"] - b["valid_elbo"]) < 1e-3
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


#: pyro_vae.cli with a stop requested on rank 0 as step STOP_AFTER_STEP + 1 begins (as a SIGTERM
#: would): the checkpoint is saved mid-epoch after that step.
STOP_ON_RANK_0 = """
import os, signal, sys
from pyro_vae.inference.train import Trainer
kl_weight = Trainer.kl_weight
def stopping(self, step=None):
    if step is None and self.ctx.is_main and self.state.step == int(os.environ["STOP_AFTER_STEP"]):
        self._stop_signal = signal.SIGTERM
    return kl_weight(self, step)
Trainer.kl_weight = stopping
from pyro_vae.cli import main
sys.exit(main())
"""


def test_two_processes_stopped_mid_epoch_and_resumed_report_one_processs_training_objective(idx_dir, tmp_path):
    """Each rank added its own shard of every batch to the epoch's sums, summed across ranks
    at the epoch's end: the standard error of the training objective was over half-batches
    (0.70 where one process has 1.01), and a run stopped mid-epoch saved rank 0's partial sums
    alone, which every rank took back on --resume (the epoch's objective -529.62 for
    -529.60). Each step now adds the global batch's sum on every rank."""
    run, single = tmp_path / "ddp", tmp_path / "single"
    args = ["train", "--dataset", "idx", "--data-dir", str(idx_dir), "--binarize", "dynamic", "--train-limit",
            str(LIMIT), "--latent-dim", "3", "--hidden-dims", "32", "--batch-size", str(BATCH), "--seed",
            str(SEED), "--no-progress", "--epochs", "2"]
    script = tmp_path / "stop_on_rank_0.py"
    script.write_text(STOP_ON_RANK_0)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"),
               STOP_AFTER_STEP="7")  # 5 steps an epoch: stopped after the 3rd step of epoch 2
    env.pop("CI", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}", str(script),
               *args, "--run-dir", str(run)]
    stopped = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert stopped.returncode != 0 and "stopped by SIGTERM after step 8 (epoch 2)" in stopped.stderr
    assert load_checkpoint(run / LAST)["position"]["next_batch"] == 3
    resumed = _torchrun(["train", "--resume", str(run), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert main([*args, "--run-dir", str(single)]) == 0
    got, want = load_checkpoint(run / LAST)["history"], load_checkpoint(single / LAST)["history"]
    assert len(got) == len(want) == 2
    assert [a["train_objective"] for a in got] == pytest.approx([b["train_objective"] for b in want], abs=1e-3)
    assert ([a["train_objective_stderr"] for a in got]
            == pytest.approx([b["train_objective_stderr"] for b in want], rel=1e-4))


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


def test_batch_norm_on_several_cpu_processes_is_refused_before_anything_is_written(idx_dir, tmp_path, monkeypatch,
                                                                                  capsys):
    """Each rank normalised its rows of a batch by their own statistics (torch's SyncBatchNorm
    runs on GPUs only), so two processes trained another model than one process with the same
    --batch-size (parameters 0.011 apart after one epoch, 3e-8 without batch norm), against
    the README's promise; it is refused in one sentence."""
    from pyro_vae import runs

    monkeypatch.setattr(runs, "init_from_environment", lambda device: (DistributedContext(0, 2), device))
    run = tmp_path / "ddp-bn"
    code = main(["train", "--dataset", "idx", "--data-dir", str(idx_dir), "--train-limit", str(LIMIT),
                 "--latent-dim", "3", "--hidden-dims", "32", "--network", "conv", "--conv-channels", "4,8",
                 "--batch-norm", "true", "--epochs", "1", "--no-progress", "--run-dir", str(run)])
    assert code == 2
    assert "--batch-norm true normalises each of the 2 processes' rows" in capsys.readouterr().err
    assert not run.exists()


def test_batch_norm_on_several_gpu_processes_is_refused_too(idx_dir, tmp_path, monkeypatch, capsys):
    """The refusal above was made on the CPU only, as if torch's SyncBatchNorm shared the
    statistics on GPUs, but no layer is ever converted to it: under torchrun --device cuda
    each rank normalised its own rows as silently as on the CPU. It is refused there too."""
    from pyro_vae import runs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(runs, "init_from_environment", lambda device: (DistributedContext(0, 2), "cuda:0"))
    run = tmp_path / "ddp-bn-cuda"
    code = main(["train", "--dataset", "idx", "--data-dir", str(idx_dir), "--train-limit", str(LIMIT),
                 "--latent-dim", "3", "--hidden-dims", "32", "--network", "conv", "--conv-channels", "4,8",
                 "--batch-norm", "true", "--epochs", "1", "--no-progress", "--device", "cuda", "--run-dir", str(run)])
    assert code == 2
    assert "--batch-norm true normalises each of the 2 processes' rows" in capsys.readouterr().err
    assert not run.exists()


def test_a_semi_supervised_model_under_torchrun_is_refused_before_its_run_directory_is_made(idx_dir, tmp_path,
                                                                                          monkeypatch, capsys):
    """--model m2 (m1m2, adgm) under torchrun was refused only after the run directory had been
    made (and, for m1m2, M1's codes computed), leaving an empty folder behind."""
    from pyro_vae import runs

    monkeypatch.setattr(runs, "init_from_environment", lambda device: (DistributedContext(0, 2), device))
    run = tmp_path / "ddp-m2"
    code = main(["train", "--model", "m2", "--labels", "20", "--dataset", "idx", "--data-dir", str(idx_dir),
                 "--train-limit", str(LIMIT), "--latent-dim", "3", "--hidden-dims", "32", "--epochs", "1",
                 "--no-progress", "--run-dir", str(run)])
    assert code == 2
    assert "--model m2 trains in one process; launch it without torchrun." in capsys.readouterr().err
    assert not run.exists()


def test_cuda_under_torchrun_without_a_gpu_for_each_rank_is_refused_in_one_sentence(idx_dir, tmp_path, monkeypatch,
                                                                                    capsys):
    """torchrun ... train --device cuda on a machine without CUDA ended every rank in an
    AttributeError traceback from torch.cuda.set_device (one process is refused in one
    sentence); a local rank beyond the machine's GPUs, or --device cuda:1 (silently replaced
    by each rank's cuda:LOCAL_RANK), are refused in one sentence too, before anything is written."""
    from pyro_vae.errors import ConfigError
    from pyro_vae.inference.distributed import init_from_environment

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = tmp_path / "ddp-cuda"
    code = main(["train", "--dataset", "idx", "--data-dir", str(idx_dir), "--train-limit", str(LIMIT),
                 "--latent-dim", "3", "--hidden-dims", "32", "--epochs", "1", "--no-progress", "--device", "cuda",
                 "--run-dir", str(run)])
    assert code == 2
    assert "device 'cuda' was asked for but CUDA is not available here; use --device cpu." in capsys.readouterr().err
    assert not run.exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="local rank 1 with --device cuda, but this machine has 1 CUDA device"):
        init_from_environment("cuda")
    with pytest.raises(ConfigError, match="--device cuda:1 names one GPU, but under torchrun each process"):
        init_from_environment("cuda:1")
