"""Faults and bad input: signals, killed writers, full disks, hostile checkpoints,
malformed data sets. Each case ends with a clear sentence and nothing lost."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from pyro_vae.cli import main
from pyro_vae.data.datasets import ImageDataset, Split
from pyro_vae.errors import CheckpointError, DataError
from pyro_vae.inference import checkpoint as ckpt
from pyro_vae.inference.checkpoint import LAST, load_checkpoint, save_checkpoint
from pyro_vae.runs import open_run

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--dataset", "idx", "--latent-dim", "3", "--hidden-dims", "32", "--batch-size", "16",
         "--no-progress", "--seed", "5", "--kl-warmup-epochs", "1"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    env.pop("CI", None)
    return env


def _same_parameters(a: Path, b: Path) -> None:
    first, second = load_checkpoint(a), load_checkpoint(b)
    assert first["step"] == second["step"]
    for part in ("model", "guide", "optimizer"):
        flat_a, flat_b = _flatten(first[part]), _flatten(second[part])
        assert flat_a.keys() == flat_b.keys()
        for key, value in flat_a.items():
            if torch.is_tensor(value):
                assert torch.equal(value, flat_b[key]), (part, key)
            else:
                assert value == flat_b[key], (part, key)


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}/{k}"))
        return out
    if isinstance(tree, (list, tuple)):
        return _flatten(dict(enumerate(tree)), prefix)
    return {prefix: tree}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(idx_dir, tmp_path, signum):
    epochs = ["--epochs", "6"]
    reference = tmp_path / "reference"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(reference), *FLAGS, *epochs]) == 0

    run = tmp_path / "interrupted"
    child = subprocess.Popen([sys.executable, "-m", "pyro_vae.cli", "train", "--data-dir", str(idx_dir),
                              "--run-dir", str(run), *FLAGS, *epochs],
                             env=_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "metrics.csv").exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.01)
    time.sleep(0.05)  # somewhere inside the second epoch
    child.send_signal(signum)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 128 + signum, err
    assert "checkpoint saved, continue with --resume" in err and "Traceback" not in err
    stopped = load_checkpoint(run / LAST)
    assert stopped["epoch"] < 6
    assert stopped["position"] is not None, "the signal should land mid-epoch"

    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    _same_parameters(reference / LAST, run / LAST)


def test_sigkill_while_writing_leaves_the_previous_checkpoint_whole(tmp_path):
    target = tmp_path / "checkpoint_last.pt"
    save_checkpoint(target, {"version": 0, "weights": torch.zeros(2_000_000)})
    writer = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT / 'src')!r})
        from pyro_vae.inference.checkpoint import save_checkpoint
        version = 0
        print("ready", flush=True)
        while True:
            version += 1
            save_checkpoint({str(target)!r}, {{"version": version, "weights": torch.full((2_000_000,), float(version))}})
    """)
    for delay in (0.05, 0.13, 0.21, 0.37):
        child = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, env=_env())
        child.stdout.readline()
        time.sleep(delay)
        child.kill()
        child.wait()
        state = load_checkpoint(target)  # always a whole checkpoint of one version
        assert torch.equal(state["weights"], torch.full((2_000_000,), float(state["version"])))


@pytest.mark.parametrize("fault", [errno.ENOSPC, errno.EACCES])
def test_full_disk_or_unwritable_directory_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fault):
    target = tmp_path / "checkpoint_last.pt"
    save_checkpoint(target, {"version": 1})
    before = target.read_bytes()

    def failing_save(obj, handle):
        handle.write(b"partial bytes")
        raise OSError(fault, os.strerror(fault))

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    with pytest.raises(CheckpointError, match="free disk space or make the run directory writable"):
        save_checkpoint(target, {"version": 2})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_last.pt"]


def test_disk_full_during_training_exits_2_and_keeps_the_run(idx_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *FLAGS, "--epochs", "1"]) == 0
    before = (run / LAST).read_bytes()
    def disk_full(obj, handle):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", disk_full)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert (run / LAST).read_bytes() == before
    monkeypatch.undo()
    assert load_checkpoint(run / LAST)["epoch"] == 1


def test_a_checkpoint_carrying_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_corrupt_checkpoint_and_mismatched_config_are_reported(idx_dir, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *FLAGS, "--epochs", "1"]) == 0
    config = (run / "config.toml").read_text()
    (run / "config.toml").write_text(config.replace("latent_dim = 3", "latent_dim = 4"))
    with pytest.raises(CheckpointError, match="does not fit its config.toml"):
        open_run(run)
    (run / "config.toml").write_text(config)
    (run / LAST).write_bytes(b"not a zip file")  # the best model is derived from the last checkpoint
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        open_run(run)


def _dataset(**changes):
    images = torch.rand(6, 1, 4, 4)
    parts = {"train": Split(images, torch.tensor([0, 1, 2, 0, 1, 2])), "valid": Split(images[:2]),
             "test": Split(images[:2])}
    parts.update(changes)
    return ImageDataset("toy", parts["train"], parts["valid"], parts["test"], "none", ("a", "b", "c"))


@pytest.mark.parametrize("changes,message", [
    ({"train": Split(torch.rand(6, 16))}, r"shape \(6, 16\); images must be \[N, C, H, W\]"),
    ({"train": Split(torch.randint(0, 2, (6, 1, 4, 4)))}, "must be a float tensor"),
    ({"valid": Split(torch.full((2, 1, 4, 4), float("nan")))}, "NaN or infinite"),
    ({"valid": Split(torch.full((2, 1, 4, 4), float("inf")))}, "NaN or infinite"),
    ({"test": Split(torch.rand(0, 1, 4, 4))}, "is empty"),
    ({"test": Split(torch.rand(2, 1, 5, 5))}, "unlike the training images"),
    ({"train": Split(torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 3, 0, 1]))}, r"labels outside 0..2"),
    ({"train": Split(torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2]))}, "3 labels for 6 images"),
])
def test_malformed_data_sets_are_refused_with_a_sentence(changes, message):
    with pytest.raises(DataError, match=message):
        _dataset(**changes).validate()
    _dataset().validate()


def test_unreadable_data_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert main(["train", "--dataset", "idx", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "r")]) == 2
    assert f"data directory {tmp_path} cannot be read" in capsys.readouterr().err
