"""Issue 15's faults on a real kernel: a full disk and a read-only file system at each write
site, a SIGKILL between the checkpoint writes, a flipped byte. Needs root (it mounts a small
tmpfs); the tests (tests/test_reliability.py) hold the same cases with mocked writes.

    sudo OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/real_faults.py

For each write site (checkpoint_last.pt, checkpoint_best.pt, metrics.csv, config.toml,
summary.json, samples.png, loglik.json, evaluation.json, and an image folder's cache) the
command that writes it runs in
a run directory on a 64 MiB tmpfs; just before that file's first write the disk is filled
(a filler file written until ENOSPC) or the tmpfs remounted read-only, so the write fails
inside the kernel, not in a mock. Checked: exit code 2, one line on stderr naming the file,
that file byte for byte unchanged, no file lost, no temporary file left, none unreadable; then the disk gets room
back (or is remounted read-write), the user's same command runs again and the run ends
equal to an uninterrupted one (:func:`faults.run_outcome`). Writes
benchmarks/results/real_faults.json.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, git_commit, write_result
from fault_injection import EVALUATE, strip_seconds, train_argv, warm_imports
from soak import tiny_data

sys.path.insert(0, str(ROOT / "tests"))
import faults  # noqa: E402

from pyro_vae import runs  # noqa: E402
from pyro_vae.cli import main  # noqa: E402
from pyro_vae.inference.checkpoint import BEST, LAST  # noqa: E402

EPOCHS = 2


def fill(mount: Path) -> None:
    """Write a filler file until the file system says ENOSPC."""
    with open(mount / "filler", "wb") as handle:
        block = b"\0" * 65536
        try:
            while True:
                handle.write(block)
                handle.flush()
        except OSError:
            pass
    for size in (4096, 512, 1):  # the last partial blocks
        try:
            with open(mount / "filler", "ab") as handle:
                while True:
                    handle.write(b"\0" * size)
                    handle.flush()
        except OSError:
            pass


def remount(mount: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], check=True)


def _child(argv, target, fault, mount, stderr_path):
    """Run the CLI; just before ``target``'s first write, make the disk full or read-only."""
    import tempfile as tf

    import matplotlib.figure

    err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1), os.dup2(err, 2)
    done = {"fired": False}

    def strike(name: str) -> None:
        if name == target and not done["fired"]:
            done["fired"] = True
            fill(mount) if fault == "full" else remount(mount, "ro")

    real_mkstemp, real_savefig = tf.mkstemp, matplotlib.figure.Figure.savefig

    def mkstemp(*args, prefix="", **kwargs):
        strike(prefix[1:-1])  # ".NAME." -> NAME
        return real_mkstemp(*args, prefix=prefix, **kwargs)

    def savefig(self, path, *args, **kwargs):
        name = Path(path).name  # ".samples.tmp.png" -> samples.png
        strike(name[1:].replace(".tmp", "") if name.startswith(".") else name)
        return real_savefig(self, path, *args, **kwargs)

    tf.mkstemp, matplotlib.figure.Figure.savefig = mkstemp, savefig
    code = main(argv)
    sys.stderr.flush()
    os._exit(99 if target and not done["fired"] and code == 0 else code)  # 99: the site was never reached


def run(argv, target=None, fault=None, mount=None, stderr_path=os.devnull) -> int:
    process = multiprocessing.get_context("fork").Process(target=_child,
                                                           args=(argv, target, fault, mount, stderr_path))
    process.start()
    process.join()
    return process.exitcode


def snapshot(run_dir: Path) -> dict:
    return {p.name: p.read_bytes() for p in run_dir.iterdir()} if run_dir.exists() else {}


def site_case(target: str, fault: str, mount: Path, refs: dict, data: Path) -> dict:
    """One write site, one fault: the failure, then the user's recovery."""
    run_dir = mount / "run"
    if target == "config.toml":  # the first write of a new run
        command = train_argv(data, run_dir, EPOCHS)
    elif target in ("loglik.json", "evaluation.json"):
        shutil.copytree(refs["evaluated"], run_dir)
        command = ["evaluate", str(run_dir), *(EVALUATE if target == "loglik.json" else ["--limit", "40"])]
    else:  # a resume from epoch 1 writes every other file
        shutil.copytree(refs["one_epoch"], run_dir)
        command = ["train", "--resume", str(run_dir), "--epochs", str(EPOCHS), "--no-progress"]
    before = snapshot(run_dir)
    stderr_path = Path(tempfile.mkstemp()[1])
    code = run(command, target, fault, mount, str(stderr_path))
    stderr = stderr_path.read_text()
    stderr_path.unlink()
    after = snapshot(run_dir)
    record = {"site": target, "fault": fault, "exit": code, "stderr": stderr.strip(),
              "one_line": stderr.count("\n") == 1 and "Traceback" not in stderr,
              "names_file": str(run_dir / target) in stderr,
              "file_unchanged": after.get(target) == before.get(target),
              "files_kept": sorted(before) == sorted(after) or not before,
              "temporary_files": sorted(name for name in after if name.startswith(".")),
              "corrupt": faults.corrupt_files(run_dir) if run_dir.exists() else []}
    if fault == "ro":
        remount(mount, "rw")
    (mount / "filler").unlink(missing_ok=True)
    if not runs.is_run_dir(run_dir) and command[0] == "train" and "--resume" in command:
        raise AssertionError(f"{target}: the resumed run is no longer a run directory")
    code_again = run(command if command[0] != "train" or "--resume" in command or not runs.is_run_dir(run_dir)
                     else ["train", "--resume", str(run_dir), "--no-progress"])
    record["recovery_exit"] = code_again
    if command[0] == "evaluate":
        record["ends_equal"] = strip_seconds(run_dir / target) == strip_seconds(refs["evaluated"] / target)
    else:
        record["ends_equal"] = faults.differences(faults.run_outcome(run_dir), faults.run_outcome(refs["full"])) == []
    shutil.rmtree(run_dir)
    print(json.dumps(record), flush=True)
    return record


def kill_cases(work: Path, refs: dict, data: Path) -> list[dict]:
    """Issue 15's first point: SIGKILL right after the last epoch's checkpoint_last.pt rename
    (then resume), and a 1-epoch run killed while writing checkpoint_best.pt (then evaluate
    and resume)."""
    out = []
    for target, nth, phase, epochs in ((LAST, EPOCHS, "after", EPOCHS), (BEST, 1, "before", 1),
                                       (BEST, 1, "after", 1), ("metrics.csv", EPOCHS, "before", EPOCHS)):
        run_dir = work / f"kill-{target}-{nth}-{phase}"
        process = multiprocessing.get_context("fork").Process(
            target=lambda: (faults.kill_at_write(target, nth, phase), os._exit(main(train_argv(data, run_dir,
                                                                                              epochs)))))
        process.start()
        process.join()
        record = {"kill": [target, nth, phase], "epochs": epochs, "killed": process.exitcode == -9,
                  "corrupt": faults.corrupt_files(run_dir)}
        if epochs == 1:
            record["evaluate_exit"] = run(["evaluate", str(run_dir), *EVALUATE])
        record["resume_exit"] = run(["train", "--resume", str(run_dir), "--epochs", str(EPOCHS), "--no-progress"])
        record["ends_equal"] = faults.differences(faults.run_outcome(run_dir), faults.run_outcome(refs["full"])) == []
        out.append(record)
    return out


def flip_case(work: Path, refs: dict) -> dict:
    """Issue 15's third point: one flipped bit in the tensor data of checkpoint_best.pt."""
    import torch

    from pyro_vae.inference.checkpoint import load_checkpoint

    run_dir = work / "flip"
    shutil.copytree(refs["full"], run_dir)
    raw = bytearray((run_dir / BEST).read_bytes())
    weights = next(v for v in load_checkpoint(run_dir / BEST)["model"].values() if torch.is_tensor(v) and v.numel() > 8)
    at = raw.index(weights.numpy().tobytes()[:16]) + 5
    raw[at] ^= 0x01
    (run_dir / BEST).write_bytes(bytes(raw))
    stderr_path = Path(tempfile.mkstemp()[1])
    code = run(["evaluate", str(run_dir), *EVALUATE], stderr_path=str(stderr_path))
    return {"byte": at, "evaluate_exit": code, "stderr": stderr_path.read_text().strip()}


def _decode_into_cache(folder: Path, cache: Path, stderr_path: str) -> None:
    from pyro_vae.data import folders
    from pyro_vae.errors import PyroVAEError

    err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(err, 2)
    try:
        folders.decoded_images(folders.scan_image_folder(folder), 64, cache_dir=cache)
    except PyroVAEError as error:
        print(f"pyro-vae: error: {error}", file=sys.stderr, flush=True)
        os._exit(2)
    os._exit(0)


def cache_case(work: Path, mount: Path) -> dict:
    """An image folder decoded into its memory-mapped cache on a full disk: before the cache's
    blocks were reserved, the first page written past the free space killed the process with
    SIGBUS (exit -7)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from image_folders import class_folder

    class_folder(work / "images", n=300)  # a 3.7 MB cache at 64x64
    fill(mount)
    with open(mount / "filler", "r+b") as handle:  # 256 KiB free: the file is made, its pages do not fit
        handle.truncate(os.fstat(handle.fileno()).st_size - 2**18)
    stderr_path = Path(tempfile.mkstemp()[1])
    process = multiprocessing.get_context("fork").Process(target=_decode_into_cache,
                                                          args=(work / "images", mount / "cache", str(stderr_path)))
    process.start()
    process.join()
    record = {"exit": process.exitcode, "stderr": stderr_path.read_text().strip(),
              "left": sorted(p.name for p in (mount / "cache").iterdir()) if (mount / "cache").exists() else []}
    (mount / "filler").unlink()
    shutil.rmtree(mount / "cache", ignore_errors=True)
    print(json.dumps(record), flush=True)
    return record


def main_() -> None:
    if os.geteuid() != 0:
        sys.exit("real_faults.py mounts a tmpfs and needs root; the tests hold the same cases with mocked writes.")
    warm_imports()  # the real figures are drawn: samples.png's write site is matplotlib's savefig
    with tempfile.TemporaryDirectory(prefix="pyro-vae-real-faults-") as tmp:
        work, mount = Path(tmp), Path(tmp) / "tmpfs"
        (work / "data").mkdir()
        tiny_data(work / "data")
        mount.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
        try:
            refs = {"full": work / "full", "one_epoch": work / "one_epoch", "evaluated": work / "evaluated"}
            assert run(train_argv(work / "data", refs["full"], EPOCHS)) == 0
            assert run(train_argv(work / "data", refs["one_epoch"], 1)) == 0
            shutil.copytree(refs["full"], refs["evaluated"])  # evaluate adds to summary.json
            assert run(["evaluate", str(refs["evaluated"]), *EVALUATE]) == 0
            assert run(["evaluate", str(refs["evaluated"]), "--limit", "40"]) == 0
            sites = [site_case(target, fault, mount, refs, work / "data")
                     for target in (LAST, BEST, "metrics.csv", "config.toml", "summary.json", "samples.png",
                                    "loglik.json", "evaluation.json")
                     for fault in ("full", "ro")]
            cache = cache_case(work, mount)
            kills = kill_cases(work, refs, work / "data")
            flip = flip_case(work, refs)
        finally:
            subprocess.run(["umount", str(mount)], check=False)
    result = {"sites": sites, "image_cache_on_a_full_disk": cache, "kills": kills, "flipped_byte": flip,
              "commit": git_commit()}
    write_result("real_faults", result)
    bad = [s for s in sites if not (s["exit"] == 2 and s["one_line"] and s["names_file"] and s["file_unchanged"]
                                    and s["files_kept"]
                                    and not s["temporary_files"] and not s["corrupt"] and s["recovery_exit"] == 0
                                    and s["ends_equal"])]
    bad += [k for k in kills if not (k["killed"] and not k["corrupt"] and k["resume_exit"] == 0 and k["ends_equal"]
                                     and k.get("evaluate_exit", 0) == 0)]
    if flip["evaluate_exit"] != 2:
        bad.append(flip)
    if cache["exit"] != 2 or cache["left"]:
        bad.append(cache)
    print(json.dumps(bad, indent=1) if bad else f"all {len(sites)} write-site cases, {len(kills)} kills and the "
          "flipped byte behaved as docs/reliability.md says")


if __name__ == "__main__":
    main_()
