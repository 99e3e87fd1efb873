"""Faults and bad input: signals, killed writers, full disks, hostile checkpoints,
malformed data sets. Each case ends with a clear sentence and nothing lost."""

import errno
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import faults
from pyro_vae.cli import main
from pyro_vae.data.datasets import ImageDataset, Split
from pyro_vae.errors import CheckpointError, DataError, WriteError
from pyro_vae.inference import checkpoint as ckpt
from pyro_vae.inference.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
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
    _fail_writes_of(monkeypatch, target.name, fault)
    with pytest.raises(WriteError, match=f"{target}.*the previous checkpoint_last.pt is intact"):
        save_checkpoint(target, {"version": 2})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_last.pt"]


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
    for name in (LAST, "checkpoint_best.pt"):
        saved = (run / name).read_bytes()
        (run / name).write_bytes(b"not a zip file")
        with pytest.raises(CheckpointError, match=f"{name} is unreadable or corrupt"):
            open_run(run)
        (run / name).write_bytes(saved)


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


# -- an epoch's end is one commit: a kill inside any write window, then resume ------------------

TINY = ["--dataset", "idx", "--latent-dim", "2", "--hidden-dims", "16", "--batch-size", "50", "--train-limit",
        "200", "--no-progress", "--seed", "3"]


def _child(argv, hook):
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1), os.dup2(devnull, 2)
    if hook:
        faults.kill_at_write(*hook)
    os._exit(main(argv))


def _fork(argv, hook=None) -> int:
    """Run the CLI in a forked process (torch already imported), killed at ``hook``'s write."""
    process = multiprocessing.get_context("fork").Process(target=_child, args=(argv, hook))
    process.start()
    process.join()
    return process.exitcode


def _train_argv(idx_dir, run, epochs):
    return ["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *TINY, "--epochs", str(epochs)]


def _finish(idx_dir, run, epochs, hook=None) -> int:
    """What a user does after a crash: resume the run, or start it again if it never committed."""
    from pyro_vae.runs import is_run_dir

    if is_run_dir(run):
        return _fork(["train", "--resume", str(run), "--no-progress"], hook)
    return _fork(_train_argv(idx_dir, run, epochs), hook)


@pytest.fixture(scope="module")
def references(idx_dir, tmp_path_factory):
    """Uninterrupted 1- and 2-epoch runs, each with an evaluation of log p(x)."""
    out = {}
    for epochs in (1, 2):
        run = tmp_path_factory.mktemp("reference") / f"run{epochs}"
        assert _fork(_train_argv(idx_dir, run, epochs)) == 0
        assert _fork(["evaluate", str(run), "--k", "4", "--limit", "20"]) == 0
        out[epochs] = run
    return out


WINDOWS = [  # (file, which write of it, before or after its rename), in a 2-epoch run
    (LAST, 1, "after"), (LAST, 2, "before"), (LAST, 2, "after"), (BEST, 1, "before"), (BEST, 1, "after"),
    ("metrics.csv", 2, "before"), ("metrics.csv", 2, "after"), ("summary.json", 1, "before"),
    ("summary.json", 1, "after"), ("config.toml", 1, "before"), ("config.toml", 1, "after"),
    ("samples.png", 1, "before"),
]


@pytest.mark.parametrize("target,nth,phase", WINDOWS)
def test_a_kill_in_any_write_window_then_resume_ends_equal(idx_dir, tmp_path, references, target, nth, phase):
    run = tmp_path / "run"
    assert _fork(_train_argv(idx_dir, run, 2), (target, nth, phase)) == -signal.SIGKILL
    assert faults.corrupt_files(run) == []
    assert _finish(idx_dir, run, 2) == 0
    assert faults.differences(faults.run_outcome(run), faults.run_outcome(references[2])) == []
    assert not list(run.glob(".*tmp*")), "temporary files left behind"


def test_a_kill_during_resume_then_resume_again_ends_equal(idx_dir, tmp_path, references):
    run = tmp_path / "run"
    assert _fork(_train_argv(idx_dir, run, 2), (LAST, 1, "after")) == -signal.SIGKILL
    # The resume rewrites the derived files first; kill it as it renames metrics.csv.
    assert _finish(idx_dir, run, 2, ("metrics.csv", 1, "after")) == -signal.SIGKILL
    assert _finish(idx_dir, run, 2) == 0
    assert faults.differences(faults.run_outcome(run), faults.run_outcome(references[2])) == []


def test_a_one_epoch_run_killed_while_writing_best_still_evaluates_and_resumes(idx_dir, tmp_path, references):
    run = tmp_path / "run"
    assert _fork(_train_argv(idx_dir, run, 1), (BEST, 1, "before")) == -signal.SIGKILL
    assert not (run / BEST).exists()
    assert _fork(["evaluate", str(run), "--k", "4", "--limit", "20"]) == 0  # the best model from LAST's record
    want = json.loads((references[1] / "loglik.json").read_text())
    got = json.loads((run / "loglik.json").read_text())
    assert {k: v for k, v in got.items() if k != "seconds"} == {k: v for k, v in want.items() if k != "seconds"}
    assert _finish(idx_dir, run, 1) == 0
    assert faults.differences(faults.run_outcome(run), faults.run_outcome(references[1])) == []


def test_a_kill_while_evaluating_leaves_no_partial_result(idx_dir, tmp_path, references):
    run = tmp_path / "run"
    shutil.copytree(references[1], run)
    (run / "loglik.json").unlink()
    command = ["evaluate", str(run), "--k", "4", "--limit", "20"]
    assert _fork(command, ("loglik.json", 1, "before")) == -signal.SIGKILL
    assert not (run / "loglik.json").exists()
    assert _fork(command) == 0
    got, want = (json.loads((r / "loglik.json").read_text()) for r in (run, references[1]))
    assert {k: v for k, v in got.items() if k != "seconds"} == {k: v for k, v in want.items() if k != "seconds"}


# -- a full disk or a read-only directory at every write site ---------------------------------------

def _fail_writes_of(monkeypatch, target: str, code: int) -> None:
    """Writes of a temporary file for ``target`` write half their bytes, then fail with
    ``code``; figures (matplotlib's savefig) fail alike."""
    real_fdopen = os.fdopen

    class Failing:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(bytes(data)[:len(data) // 2])
            raise OSError(code, os.strerror(code))

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def fdopen(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        return Failing(handle) if f"/.{target}." in os.readlink(f"/proc/self/fd/{fd}") else handle

    monkeypatch.setattr(os, "fdopen", fdopen)
    import matplotlib.figure

    real_savefig = matplotlib.figure.Figure.savefig

    def savefig(self, path, *args, **kwargs):
        if Path(path).name.startswith(f".{Path(target).stem}.tmp"):
            Path(path).write_bytes(b"\x89PNG partial")
            raise OSError(code, os.strerror(code))
        return real_savefig(self, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)


SITES = [(LAST, errno.ENOSPC), (BEST, errno.ENOSPC), ("metrics.csv", errno.ENOSPC), ("config.toml", errno.EROFS),
         ("summary.json", errno.ENOSPC), ("samples.png", errno.ENOSPC), (LAST, errno.EACCES),
         ("summary.json", errno.EROFS)]


@pytest.mark.parametrize("target,code", SITES)
def test_a_failed_write_at_each_site_is_one_sentence_and_keeps_the_previous_file(
        idx_dir, tmp_path, monkeypatch, capsys, references, target, code):
    run = tmp_path / "run"
    shutil.copytree(references[1], run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    _fail_writes_of(monkeypatch, target, code)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(run / target) in err and f"the previous {target} is intact" in err
    assert ("no space left on the device" if code == errno.ENOSPC else os.strerror(code)) in err
    assert (run / target).read_bytes() == before[target]
    assert sorted(p.name for p in run.iterdir()) == sorted(before), "temporary files left behind"
    assert faults.corrupt_files(run) == []
    monkeypatch.undo()  # the disk has room again: the run goes on to the end as if nothing happened
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert faults.differences(faults.run_outcome(run), faults.run_outcome(references[2])) == []


@pytest.mark.parametrize("target,flags", [("loglik.json", ["--k", "4"]), ("evaluation.json", [])])
def test_a_failed_write_of_an_evaluation_keeps_the_previous_result(tmp_path, monkeypatch, capsys, references,
                                                                    target, flags):
    run = tmp_path / "run"
    shutil.copytree(references[1], run)
    assert main(["evaluate", str(run), "--limit", "20", *flags]) == 0
    before = (run / target).read_bytes()
    _fail_writes_of(monkeypatch, target, errno.ENOSPC)
    assert main(["evaluate", str(run), "--limit", "20", "--seed", "1", *flags, "-o", str(run / target)]) == 2
    err = capsys.readouterr().err
    assert f"no space left on the device while writing {run / target}" in err and "is intact" in err
    assert (run / target).read_bytes() == before
    assert not list(run.glob(".*tmp*"))


def test_a_new_run_that_cannot_write_its_first_file_leaves_nothing(idx_dir, tmp_path, monkeypatch, capsys):
    _fail_writes_of(monkeypatch, "config.toml", errno.EROFS)
    run = tmp_path / "run"
    assert main(_train_argv(idx_dir, run, 1)) == 2
    err = capsys.readouterr().err
    assert f"cannot write {run / 'config.toml'} (Read-only file system)" in err and "no config.toml was written" in err
    assert list(run.iterdir()) == []


def test_a_figure_on_a_read_only_file_system_is_one_sentence(tmp_path, monkeypatch):
    """On a read-only file system even unlinking the temporary file that was never created
    fails (EROFS, not ENOENT): the clean-up must not replace the sentence with a traceback.
    Found on a real read-only tmpfs by benchmarks/real_faults.py."""
    from matplotlib.figure import Figure

    from pyro_vae import plots

    target = tmp_path / "samples.png"
    target.write_bytes(b"the previous figure")

    def savefig(self, path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self.parent == tmp_path:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Figure, "savefig", savefig)
    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(WriteError, match=r"cannot write .*samples\.png \(Read-only file system\); make .* writable "
                                         r"or choose another directory \(the previous samples\.png is intact\)"):
        plots._save(Figure(), target)
    assert target.read_bytes() == b"the previous figure"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_an_image_folder_cache_that_cannot_be_written_is_one_sentence_before_decoding(tmp_path, monkeypatch, code):
    """The image cache is a memory map: on a full disk a page write would kill the process
    with SIGBUS, maybe an hour into decoding. Its blocks are reserved first, so a full disk
    (or a read-only one) is a sentence before any image is decoded, and nothing is left."""
    from image_folders import class_folder

    from pyro_vae.data import folders

    class_folder(tmp_path / "data", n=12)
    layout = folders.scan_image_folder(tmp_path / "data")
    asked = {}

    def fallocate(fd, offset, length):
        asked["bytes"] = length
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "posix_fallocate", fallocate, raising=False)
    monkeypatch.setattr(folders, "decode_folder", lambda *args: pytest.fail("decoded before the space was reserved"))
    cache = tmp_path / "cache"
    with pytest.raises(WriteError, match=r"(no space left on the device while writing|cannot write) "
                                         rf"{cache}/\w+\.npy.*\(no \w+\.npy was written\)\.$"):
        folders.decoded_images(layout, 12, cache_dir=cache)
    assert asked["bytes"] >= 12 * 3 * 12 * 12  # the whole array: header and every image's bytes
    assert list(cache.iterdir()) == []


def test_torch_saves_own_write_error_is_reported_as_a_full_disk(tmp_path, monkeypatch):
    """torch.save reports a short write on a full disk as a RuntimeError ("unexpected pos")."""
    target = tmp_path / "checkpoint_last.pt"

    def short_write(handle):
        handle.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 64 vs 0")

    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.raises(WriteError, match=f"no space left on the device while writing {target}; .*no "
                                         "checkpoint_last.pt was written"):
        ckpt.atomic_write_bytes(target, short_write)
    assert list(tmp_path.iterdir()) == []


# -- a flipped byte ----------------------------------------------------------------------------

def test_a_flipped_byte_anywhere_in_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "checkpoint_last.pt"
    weights = torch.linspace(-1, 1, 300)
    save_checkpoint(path, {"model": {"w": weights}, "history": [{"epoch": 1, "valid_elbo": -90.5}]})
    data = path.read_bytes()
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x04
        path.write_bytes(bytes(damaged))
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            assert str(path) in str(err) and ("corrupt" in str(err))
            continue
        # Only a flip inside the digest's own label or length can go unnoticed, and those
        # change nothing that is loaded.
        assert i >= len(data) - len(ckpt.DIGEST_PREFIX) - 66, i
        assert torch.equal(state["model"]["w"], weights) and state["history"][0]["valid_elbo"] == -90.5


def test_a_flipped_byte_in_a_run_is_refused_by_resume_and_evaluate(tmp_path, capsys, references):
    run = tmp_path / "run"
    shutil.copytree(references[1], run)
    data = bytearray((run / LAST).read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the tensor data
    (run / LAST).write_bytes(bytes(data))
    for command in (["evaluate", str(run)], ["train", "--resume", str(run), "--epochs", "2", "--no-progress"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"checkpoint {run / LAST} is corrupt (its bytes do not match the SHA-256" in err


def test_an_old_checkpoint_without_a_digest_is_checked_by_its_zip_crcs(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"w": torch.arange(100.0)}, path)  # as pyro-vae wrote them before the digest
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(100.0))
    data = bytearray(path.read_bytes())
    data[data.index(torch.arange(100.0).numpy().tobytes()) + 40] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the CRC-32"):
        load_checkpoint(path)


# -- SIGTERM during start-up -------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_start_up_is_an_interruption(idx_dir, tmp_path, signum):
    """The signal lands while the data set is being read, before the trainer's own handlers."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job ignores it)
        import pyro_vae.runs as runs
        real = runs.open_dataset
        def open_dataset(*args, **kwargs):
            os.kill(os.getpid(), {int(signum)})
            return real(*args, **kwargs)
        runs.open_dataset = open_dataset
        from pyro_vae.cli import main
        sys.exit(main({_train_argv(idx_dir, tmp_path / 'run', 1)!r}))
    """)
    result = subprocess.run([sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 128 + signum, result.stderr
    assert result.stderr == (f"pyro-vae: interrupted by {signal.Signals(signum).name}; no file was left "
                             "half-written (each is written whole or not at all).\n")
    assert not (tmp_path / "run").exists()


def _caught(pid: int) -> set[int]:
    """SIGINT and SIGTERM, those of them the process has a handler for (/proc's SigCgt mask)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return {signum for signum in (signal.SIGINT, signal.SIGTERM) if mask >> (signum - 1) & 1}


def _torch_loaded(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def _console_script(tmp_path: Path) -> Path:
    """The ``pyro-vae`` script pip writes for pyproject's [project.scripts] entry (its template)."""
    import tomllib

    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["pyro-vae"]
    module, function = target.split(":")
    script = tmp_path / "pyro-vae"
    script.write_text(f"import re\nimport sys\nfrom {module} import {function}\nif __name__ == '__main__':\n"
                      f"    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
                      f"    sys.exit({function}())\n")
    return script


STARTED = "pyro-vae: interrupted by {name} during start-up; nothing was written."
LATER = (r"pyro-vae: interrupted by {name}; no file was left half-written \(each is written whole or not at all\)\.|"
         r"pyro-vae: stopped by {name} after step \d+ \(epoch \d+\); checkpoint saved, continue with --resume .*\.")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux only)")
def test_sigterm_at_any_instant_of_start_up_is_an_interruption_like_sigint(idx_dir, tmp_path):
    """SIGTERM (and SIGINT, alike) at instants from 0 to 2 s after ``pyro-vae train`` starts,
    through ``python -m pyro_vae.cli`` and the console script: exit 128 + signal and one
    sentence, never a silent death (-15) while torch imports. Before the interpreter runs any
    Python code both signals kill the process alike (nothing can catch them yet); from the
    moment Python catches SIGINT, SIGTERM must be caught too before torch is loaded (checked
    through /proc at each instant), and then the signal is sent."""
    script = _console_script(tmp_path)
    programs = {"module": [sys.executable, "-m", "pyro_vae.cli"], "script": [sys.executable, str(script)]}
    trials = [("module", signal.SIGTERM, d) for d in (0.0, 0.05, 0.2, 0.5, 1.0, 2.0)]
    trials += [("module", signal.SIGINT, 0.2), ("module", signal.SIGINT, 1.0),
               ("script", signal.SIGTERM, 0.5), ("script", signal.SIGTERM, 1.5)]
    started = []
    for i, (program, signum, delay) in enumerate(trials):
        argv = _train_argv(idx_dir, tmp_path / f"run{i}", 1000)  # still running at 2 s
        process = subprocess.Popen([*programs[program], *argv], env=_env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        started.append((time.monotonic(), process))
    try:
        early = {}
        for i in sorted(range(len(trials)), key=lambda i: trials[i][2]):
            (program, signum, delay), (t0, process) = trials[i], started[i]
            time.sleep(max(0.0, t0 + delay - time.monotonic()))
            python_runs = signal.SIGINT in _caught(process.pid)
            if python_runs:  # the pre-entry window (site, `import pyro_vae.entry`) takes milliseconds
                while signal.SIGTERM not in _caught(process.pid):
                    assert process.poll() is None, process.communicate()
                    assert not _torch_loaded(process.pid), f"{program}: torch imported before SIGTERM is handled"
                    time.sleep(0.001)
            process.send_signal(signum)
            early[i] = not python_runs
        for i, (program, signum, delay) in enumerate(trials):
            process = started[i][1]
            _, stderr = process.communicate(timeout=120)
            name = signal.Signals(signum).name
            if early[i] and process.returncode == -signum:
                continue  # killed before Python ran: as SIGINT would have been
            assert process.returncode == 128 + signum, (program, name, delay, process.returncode, stderr)
            if stderr == STARTED.format(name=name) + "\n":
                assert not (tmp_path / f"run{i}").exists()
            else:
                assert re.fullmatch(LATER.format(name=name) + "\n", stderr), (program, name, delay, stderr)
    finally:  # nothing left running when an assertion fails
        for _, process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_importing_the_package_or_the_command_imports_no_torch():
    """`import pyro_vae` is lazy (PEP 562), so the command's entry runs before torch is
    imported; importing it installs no signal handler (only the program's entry does)."""
    code = textwrap.dedent("""
        import json, signal, sys
        before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
        import pyro_vae, pyro_vae.entry, pyro_vae.cli, pyro_vae.errors
        print(json.dumps({"heavy": [m for m in ("torch", "pyro", "numpy", "matplotlib") if m in sys.modules],
                          "same_signals": [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == before}))
    """)
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"heavy": [], "same_signals": True}


def test_every_public_name_resolves_and_fit_stays_the_function():
    """The lazy names are the objects of their modules; ``pyro_vae.fit`` stays the function
    even when its submodule is imported directly, which makes the import system bind the
    submodule to the package's attribute (simulated here by that same setattr)."""
    import importlib
    import types

    import pyro_vae

    for name in pyro_vae.__all__:
        assert getattr(pyro_vae, name) is getattr(importlib.import_module(pyro_vae._EXPORTS[name]), name), name
    assert set(pyro_vae.__all__) <= set(dir(pyro_vae))
    setattr(pyro_vae, "fit", importlib.import_module("pyro_vae.fit"))
    assert isinstance(pyro_vae.fit, types.FunctionType) and pyro_vae.fit.__module__ == "pyro_vae.fit"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        pyro_vae.nothing


def test_a_best_checkpoint_left_behind_the_commit_is_not_used(tmp_path, references):
    """A kill after checkpoint_last.pt committed a new best epoch but before
    checkpoint_best.pt was rewritten: the figures and evaluate use the committed best."""
    run = tmp_path / "run"
    shutil.copytree(references[2], run)
    shutil.copy(references[1] / BEST, run / BEST)  # epoch 1's best, stale
    last = load_checkpoint(run / LAST)
    assert last["best"]["epoch"] == 2 and load_checkpoint(run / BEST)["epoch"] == 1
    best = open_run(run).checkpoint
    assert best["epoch"] == 2
    assert all(torch.equal(best["model"][k], v) for k, v in last["best"]["model"].items())
