"""Fault injection: SIGKILL the CLI at random instants of training, resume and evaluation,
then finish the run as a user would and compare it, bit for bit, with a run never killed.

    python benchmarks/fault_injection.py [--trials 200] [--max-minutes 40] [--seed 0]

Each trial picks a phase (a fresh training run, a resume of a 1-epoch run, or an
evaluation of log p(x)) and a kill: at a checkpoint or file write (60 % of trials: the
instants that matter most; half of these in training and resume at a write of
checkpoint_last.pt or checkpoint_best.pt, the others at a random file; which of its writes,
and before or after its rename, at random)
or after a random delay drawn uniformly over the phase's uninterrupted duration. One trial
in five also kills the first resume. Then: ``--resume`` (when it is refused, the user's
other move: the same command again), and the run directory is compared with the
uninterrupted one (:func:`faults.run_outcome`: checkpoints, metrics rows, summary, config,
files; wall-clock times excluded). Counted: kills, corrupt files found after a kill (a run
file that exists but cannot be read whole), runs that ended different, resumes refused.
Processes are forked from this one with torch and everything a run imports lazily already
imported (:func:`warm_imports`: the optimizer's first construction imports ``torch._dynamo``,
about 4 s, which every forked child paid again before), and the final figures are 8x8-pixel
images written through the same writer (:func:`quick_figures`), so a trial takes a few seconds
on a tiny model and data set. Writes benchmarks/results/fault_injection.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, git_commit, write_result
from soak import tiny_data

sys.path.insert(0, str(ROOT / "tests"))
import faults  # noqa: E402  (the same helpers as tests/test_reliability.py)

from pyro_vae import plots, runs  # noqa: E402
from pyro_vae.cli import main  # noqa: E402
from pyro_vae.inference.checkpoint import BEST, LAST  # noqa: E402
from pyro_vae.runs import is_run_dir  # noqa: E402

EPOCHS = 3
FLAGS = ["--dataset", "idx", "--latent-dim", "2", "--hidden-dims", "16", "--batch-size", "50", "--train-limit",
         "200", "--no-progress", "--seed", "11", "--kl-warmup-epochs", "1"]
EVALUATE = ["--k", "8", "--limit", "40"]
#: The files each phase writes, and how many times at most (a random nth beyond that never fires
#: and the trial becomes an uninterrupted one, which is counted apart).
WRITES = {
    "train": {"config.toml": 1, LAST: EPOCHS, BEST: EPOCHS, "metrics.csv": EPOCHS, "summary.json": 1,
              "samples.png": 1, "reconstructions.png": 1, "curves.png": 1},
    "resume": {"config.toml": 1, LAST: EPOCHS - 1, BEST: EPOCHS, "metrics.csv": EPOCHS, "summary.json": 1,
               "samples.png": 1, "curves.png": 1},
    "evaluate": {"loglik.json": 1},
}


def quick_figures(model, guide, dataset, run_dir, device) -> list[Path]:
    """The run's figures as 8x8-pixel images, through the same writer (a temporary file, then
    a rename): matplotlib's layout of the real figures takes 80 % of a tiny run's time."""
    import matplotlib.figure

    names = ["samples.png", "reconstructions.png"] + (["curves.png"] if (run_dir / runs.METRICS).exists() else [])
    return [plots._save(matplotlib.figure.Figure(figsize=(0.08, 0.08)), run_dir / name) for name in names]


def warm_imports() -> None:
    """Import in this process what a run imports on first use, so forked trials do not pay
    for it each time: constructing the first torch optimizer imports ``torch._dynamo``."""
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def _child(argv, kill):
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1), os.dup2(devnull, 2)
    if kill is not None:
        faults.kill_at_write(*kill)
    os._exit(main(argv))


def run_cli(argv, kill_at_write=None, kill_after=None) -> int:
    """Run the CLI in a forked process; SIGKILL it at a write or after ``kill_after`` seconds.
    Returns its exit code (-9 when killed)."""
    process = multiprocessing.get_context("fork").Process(target=_child, args=(argv, kill_at_write))
    process.start()
    if kill_after is not None:
        process.join(kill_after)
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
    process.join()
    return process.exitcode


def train_argv(data: Path, run: Path, epochs: int) -> list[str]:
    return ["train", "--data-dir", str(data), "--run-dir", str(run), *FLAGS, "--epochs", str(epochs)]


def strip_seconds(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if k != "seconds"}


class Trial:
    """One kill (or two) and the user's recovery, in its own run directory."""

    def __init__(self, rng: random.Random, data: Path, references: dict, durations: dict, workdir: Path):
        self.rng, self.data, self.references, self.durations = rng, data, references, durations
        self.run = workdir / "run"
        self.record: dict = {"kills": 0, "refused": [], "corrupt": []}

    def pick_kill(self, phase: str):
        if self.rng.random() < 0.6:
            names = sorted(WRITES[phase])
            checkpoints = [name for name in names if name in (LAST, BEST)]
            if checkpoints and self.rng.random() < 0.5:  # half the write kills at a checkpoint write
                names = checkpoints
            target = self.rng.choice(names)
            nth = self.rng.randint(1, WRITES[phase][target])
            return {"at_write": (target, nth, self.rng.choice(("before", "after")))}
        return {"after_seconds": self.rng.uniform(0.0, self.durations[phase])}

    def killed(self, argv, kill) -> bool:
        code = run_cli(argv, kill.get("at_write"), kill.get("after_seconds"))
        if code == -signal.SIGKILL:
            self.record["kills"] += 1
            self.record["corrupt"] += faults.corrupt_files(self.run)
            return True
        if code != 0:
            raise RuntimeError(f"{argv} exited {code} without being killed")
        return False

    def finish_training(self, second_kill) -> None:
        """Resume; if that is refused (the run never committed an epoch), start it again."""
        resume = ["train", "--resume", str(self.run), "--epochs", str(EPOCHS), "--no-progress"]
        if second_kill is not None and is_run_dir(self.run) and self.killed(resume, second_kill):
            pass
        code = run_cli(resume)
        if code != 0:
            self.record["refused"].append(code)
            shutil.rmtree(self.run / "tensorboard", ignore_errors=True)
            code = run_cli(train_argv(self.data, self.run, EPOCHS))
        assert code == 0, code

    def go(self) -> dict:
        phase = self.rng.choice(("train", "resume", "evaluate"))
        kill = self.pick_kill(phase)
        self.record.update(phase=phase, kill=kill)
        if phase == "train":
            fired = self.killed(train_argv(self.data, self.run, EPOCHS), kill)
        elif phase == "resume":
            shutil.copytree(self.references["one_epoch"], self.run)
            fired = self.killed(["train", "--resume", str(self.run), "--epochs", str(EPOCHS), "--no-progress"], kill)
        else:
            shutil.copytree(self.references["full"], self.run)
            (self.run / "loglik.json").unlink()
            command = ["evaluate", str(self.run), *EVALUATE]
            fired = self.killed(command, kill)
            if fired:
                assert run_cli(command) == 0
            same = strip_seconds(self.run / "loglik.json") == strip_seconds(self.references["full"] / "loglik.json")
            self.record.update(fired=fired, different=[] if same else ["loglik.json"])
            return self.record
        if fired:
            self.finish_training(self.pick_kill("resume") if self.rng.random() < 0.2 else None)
        self.record["fired"] = fired
        self.record["different"] = faults.differences(faults.run_outcome(self.run),
                                                      faults.run_outcome(self.references["full"]))
        return self.record


def references(data: Path, workdir: Path) -> tuple[dict, dict]:
    """The uninterrupted runs, and how long each phase takes uninterrupted (seconds)."""
    full, one = workdir / "full", workdir / "one_epoch"
    durations = {}
    start = time.perf_counter()
    assert run_cli(train_argv(data, full, EPOCHS)) == 0
    durations["train"] = time.perf_counter() - start
    assert run_cli(train_argv(data, one, 1)) == 0
    resumed = workdir / "resumed"
    shutil.copytree(one, resumed)
    start = time.perf_counter()
    assert run_cli(["train", "--resume", str(resumed), "--epochs", str(EPOCHS), "--no-progress"]) == 0
    durations["resume"] = time.perf_counter() - start
    assert faults.differences(faults.run_outcome(resumed), faults.run_outcome(full)) == []
    start = time.perf_counter()
    assert run_cli(["evaluate", str(full), *EVALUATE]) == 0
    durations["evaluate"] = time.perf_counter() - start
    return {"full": full, "one_epoch": one}, durations


def main_() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--max-minutes", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    runs._figures = quick_figures
    warm_imports()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pyro-vae-faults-") as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        tiny_data(data)
        refs, durations = references(data, work / "references")
        records = []
        for i in range(args.trials):
            if time.perf_counter() - started > 60 * args.max_minutes:
                break
            trial_dir = work / f"trial{i}"
            trial_dir.mkdir()
            records.append(Trial(rng, data, refs, durations, trial_dir).go())
            shutil.rmtree(trial_dir)
            if (i + 1) % 20 == 0:
                print(f"{i + 1} trials, {sum(r['kills'] for r in records)} kills, "
                      f"{sum(bool(r['different']) for r in records)} ended different", flush=True)
    fired = [r for r in records if r["fired"]]
    at_write = [r for r in fired if "at_write" in r["kill"]]
    result = {
        "trials": len(records),
        "trials_asked": args.trials,
        "kills": sum(r["kills"] for r in records),
        "trials_killed": len(fired),
        "trials_not_killed": len(records) - len(fired),
        "kills_at_a_write": {"before_rename": sum(r["kill"]["at_write"][2] == "before" for r in at_write),
                             "after_rename": sum(r["kill"]["at_write"][2] == "after" for r in at_write)},
        "kills_at_a_random_time": len(fired) - len(at_write),
        "second_kills_during_resume": sum(r["kills"] - 1 for r in fired),
        "by_phase": {p: sum(r["phase"] == p for r in fired) for p in ("train", "resume", "evaluate")},
        "kills_by_file": {name: sum(r["kill"]["at_write"][0] == name for r in at_write)
                          for name in sorted({n for w in WRITES.values() for n in w})},
        "corrupt_files": sum(len(r["corrupt"]) for r in records),
        "corrupt_examples": [c for r in records for c in r["corrupt"]][:10],
        "runs_ended_different": sum(bool(r["different"]) for r in records),
        "different_examples": [{"kill": r["kill"], "phase": r["phase"], "keys": r["different"][:5]}
                               for r in records if r["different"]][:10],
        "resumes_refused": sum(len(r["refused"]) for r in records),
        "uninterrupted_seconds": durations,
        "seconds": time.perf_counter() - started,
        "commit": git_commit(),
    }
    write_result("fault_injection", result)
    print(json.dumps({k: result[k] for k in ("trials", "kills", "corrupt_files", "runs_ended_different",
                                              "resumes_refused", "seconds")}))


if __name__ == "__main__":
    main_()
