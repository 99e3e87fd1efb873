"""Sweeps on Optuna: every grid point once, results equal to each run's own summary, an
interrupted sweep finished by rerunning the command, two workers sharing one study, and
bad sweeps refused before anything is written."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyro_vae.cli import main
from pyro_vae.config import Config
from pyro_vae.errors import ConfigError

optuna = pytest.importorskip("optuna", reason="sweeps need the 'sweep' extra (pip install 'pyro-vae[sweep]')")

from pyro_vae.experiments import sweep  # noqa: E402
from pyro_vae.inference.checkpoint import LAST, load_checkpoint  # noqa: E402


def tiny_flags(idx_dir, epochs=2, without=()):
    """The tiny runs' flags, less those of ``without`` (options a search sets itself)."""
    flags = {"--dataset": "idx", "--data-dir": str(idx_dir), "--binarize": "dynamic", "--latent-dim": "2",
             "--hidden-dims": "16", "--epochs": str(epochs), "--batch-size": "200", "--learning-rate": "3e-3",
             "--train-limit": "600"}
    return [item for flag, value in flags.items() if flag not in without for item in (flag, value)]


def grid_args(idx_dir, sweep_dir, epochs=2):
    return ["sweep", "--sweep-dir", str(sweep_dir), "--grid", "beta=0.5,1", "--grid", "objective=elbo,iwae",
            "--seeds", "2", "--k", "2", *tiny_flags(idx_dir, epochs)]


def env():
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}


def trials_by_state(sweep_dir: Path) -> dict[str, list]:
    study = optuna.load_study(study_name=sweep.study_name(sweep.load_spec(sweep_dir), sweep_dir),
                              storage=sweep.default_storage(sweep_dir))
    out: dict[str, list] = {}
    for trial in study.get_trials(deepcopy=False):
        out.setdefault(trial.state.name, []).append(trial)
    return out


NAMES = sorted(f"beta={b},objective={o},seed={s}" for b in ("0.5", "1") for o in ("elbo", "iwae") for s in (0, 1))


@pytest.mark.slow
def test_killed_grid_sweep_is_finished_by_the_same_command_and_results_equal_the_summaries(idx_dir, tmp_path):
    sweep_dir = tmp_path / "grid"
    args = grid_args(idx_dir, sweep_dir, epochs=3)
    process = subprocess.Popen([sys.executable, "-m", "pyro_vae.cli", *args], env=env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it (SIGKILL: no chance to clean up) while its third run is mid-training: that
    # run has a checkpoint but no summary yet.
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            runs = [p for p in sweep_dir.glob("*=*") if (p / LAST).is_file()]
            finished = [p for p in runs if (p / "summary.json").is_file()]
            if len(finished) >= 2 and any(not (p / "summary.json").is_file() for p in runs):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the sweep never reached its third run")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    interrupted = [p.name for p in sweep_dir.glob("*=*") if (p / LAST).is_file() and not (p / "summary.json").is_file()]
    finished = {p.name: (p / "summary.json").stat().st_mtime_ns for p in sweep_dir.glob("*=*")
                if (p / "summary.json").is_file()}
    assert len(interrupted) == 1 and len(finished) >= 2
    epochs_before = load_checkpoint(sweep_dir / interrupted[0] / LAST)["epoch"]
    assert 1 <= epochs_before < 3

    assert main(args) == 0

    # Finished runs were not trained again; the interrupted one was resumed, not restarted.
    for name, mtime in finished.items():
        assert (sweep_dir / name / "summary.json").stat().st_mtime_ns == mtime, name
    assert [row["epoch"] for row in load_checkpoint(sweep_dir / interrupted[0] / LAST)["history"]] == [1, 2, 3]
    states = trials_by_state(sweep_dir)
    complete = sorted(t.user_attrs["run_dir"] for t in states["COMPLETE"])
    assert complete == NAMES  # each point exactly once
    assert [t.user_attrs["run_dir"] for t in states["FAIL"]] == interrupted
    assert states["FAIL"][0].user_attrs["error"].startswith("interrupted")

    with open(sweep_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["run_dir"] for row in rows) == NAMES
    for row in rows:
        summary = json.loads((sweep_dir / row["run_dir"] / "summary.json").read_text())
        for key in ("test_elbo", "best_valid_criterion", "epochs", "best_epoch"):
            assert float(row[key]) == float(summary[key]), (row["run_dir"], key)
        assert float(row["valid_elbo"]) == summary["best_epoch_metrics"]["valid_elbo"]  # the sweep's metric
        assert float(row["beta"]) == summary["beta"] and row["objective"] == summary["objective"]
        assert int(row["seed"]) == summary["seed"]
        config = Config.load(sweep_dir / row["run_dir"] / "config.toml")
        assert (config.train.beta, config.train.objective, config.train.seed) == (
            summary["beta"], summary["objective"], summary["seed"])
    assert (sweep_dir / "sweep.png").stat().st_size > 0

    # A third run of the command has nothing left to do and changes no run.
    before = {p.name: (p / LAST).stat().st_mtime_ns for p in sweep_dir.glob("*=*")}
    assert main(args) == 0
    assert before == {p.name: (p / LAST).stat().st_mtime_ns for p in sweep_dir.glob("*=*")}
    assert len(trials_by_state(sweep_dir)["COMPLETE"]) == 8


@pytest.mark.slow
def test_two_worker_processes_on_one_sqlite_study_never_run_a_trial_twice(idx_dir, tmp_path):
    sweep_dir = tmp_path / "shared"
    base = Config()
    for flag, value in zip(tiny_flags(idx_dir)[::2], tiny_flags(idx_dir)[1::2]):
        base.set(flag[2:].replace("-", "_"), value)
    spec = sweep.SweepSpec(base.validate(), {"beta": [0.5, 1.0, 2.0], "latent_dim": [2, 3]}, [0]).validate()
    sweep.create_sweep(spec, sweep_dir, log=lambda s: None)
    workers = [subprocess.Popen([sys.executable, "-m", "pyro_vae.cli", "sweep", "--sweep-dir", str(sweep_dir),
                                 "--join", "--worker-index", str(i)], env=env(), stdout=subprocess.DEVNULL)
               for i in (1, 2)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0]
    states = trials_by_state(sweep_dir)
    assert set(states) == {"COMPLETE"}  # no failure (a second training of one run dir would fail)
    names = [t.user_attrs["run_dir"] for t in states["COMPLETE"]]
    assert sorted(names) == sorted(spec.run_name(p) for p in spec.points())  # 6 points, each once
    owners = {t.user_attrs["owner"] for t in states["COMPLETE"]}
    assert len(owners) == 2, owners  # both processes took trials
    for name in names:  # and each run trained its epochs once: one history, epochs 1..2
        assert [row["epoch"] for row in load_checkpoint(sweep_dir / name / LAST)["history"]] == [1, 2]


def test_a_worker_takes_its_trial_under_the_sweep_dirs_lock(idx_dir, tmp_path, monkeypatch):
    # Two workers on one SQLite study could both take the same queued trial (Optuna reads
    # WAITING, then writes RUNNING); the sweep directory's file lock makes the take atomic.
    import fcntl

    import optuna

    sweep_dir = tmp_path / "locked"
    base = Config()
    for flag, value in zip(tiny_flags(idx_dir, epochs=1)[::2], tiny_flags(idx_dir, epochs=1)[1::2]):
        base.set(flag[2:].replace("-", "_"), value)
    spec = sweep.SweepSpec(base.validate(), {"beta": [0.5, 1.0]}, [0]).validate()
    sweep.create_sweep(spec, sweep_dir, log=lambda s: None)
    held, real_ask = [], optuna.study.Study.ask

    def ask(self, *args, **kwargs):
        with open(sweep_dir / sweep.ASK_LOCK, "a") as other:  # another open file: flock conflicts
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(True)
            else:
                held.append(False)
                fcntl.flock(other, fcntl.LOCK_UN)
        return real_ask(self, *args, **kwargs)

    monkeypatch.setattr(optuna.study.Study, "ask", ask)
    assert sweep.run_worker(spec, sweep_dir, log=lambda s: None) == 2
    assert held == [True, True]


def test_a_sweep_under_torchrun_is_refused_before_anything_is_written(idx_dir, tmp_path, monkeypatch, capsys):
    """torchrun --nproc_per_node 2 -m pyro_vae.cli sweep ran the whole sweep in every rank on one
    study: one rank died on its own study.db ("UNIQUE constraint failed", named as an unwritable
    folder), torchrun killed the other, and a half-made sweep directory stayed behind."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    sweep_dir = tmp_path / "sweep"
    code = main(["sweep", "--sweep-dir", str(sweep_dir), "--grid", "beta=0.5,1", *tiny_flags(idx_dir, 1)])
    assert code == 2
    assert "sweep runs each of its trainings in one process, but torchrun started 2" in capsys.readouterr().err
    assert not sweep_dir.exists()


def test_a_failing_trial_is_recorded_and_the_others_go_on(idx_dir, tmp_path, monkeypatch, capsys):
    import pyro_vae.runs as runs

    real = runs.train_run

    def train_run(config, run_dir, **kwargs):
        if config is not None and config.train.beta == 2.0:
            raise RuntimeError("disk on fire")
        return real(config, run_dir, **kwargs)

    monkeypatch.setattr(runs, "train_run", train_run)
    sweep_dir = tmp_path / "failing"
    args = ["sweep", "--sweep-dir", str(sweep_dir), "--grid", "beta=2,1", *tiny_flags(idx_dir, epochs=1)]
    assert main(args) == 1  # finished, with a failure to report
    with open(sweep_dir / "results.csv", newline="") as handle:
        rows = {row["run_dir"]: row for row in csv.DictReader(handle)}
    assert rows["beta=2,seed=0"]["state"] == "FAIL"
    assert rows["beta=2,seed=0"]["error"] == "RuntimeError: disk on fire"
    assert rows["beta=1,seed=0"]["state"] == "COMPLETE"
    # each number with its standard error over the images, and the test ELBO's kind
    done = rows["beta=1,seed=0"]
    summary = json.loads((sweep_dir / "beta=1,seed=0" / "summary.json").read_text())
    assert float(done["valid_elbo_stderr"]) == summary["best_epoch_metrics"]["valid_elbo_stderr"] > 0
    for key in ("test_elbo_stderr", "test_kl_stderr", "bits_per_dim"):
        assert float(done[key]) == summary[key] > 0, key
    assert done["kind"] == "probability mass on binary data" and done["unit"] == "nats per example"
    assert rows["beta=2,seed=0"]["valid_elbo_stderr"] == ""
    out = capsys.readouterr().out
    assert (f"[beta=1,seed=0] valid_elbo {summary['best_epoch_metrics']['valid_elbo']:.4f} ± "
            f"{summary['best_epoch_metrics']['valid_elbo_stderr']:.4f} nats per example") in out
    # Rerun once the cause is gone: only the failed point runs.
    monkeypatch.setattr(runs, "train_run", real)
    mtime = (sweep_dir / "beta=1,seed=0" / "summary.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (sweep_dir / "beta=1,seed=0" / "summary.json").stat().st_mtime_ns == mtime
    assert (sweep_dir / "beta=2,seed=0" / "summary.json").is_file()


def test_search_runs_the_asked_number_of_trials_within_the_ranges(idx_dir, tmp_path):
    sweep_dir = tmp_path / "search"
    args = ["sweep", "--sweep-dir", str(sweep_dir), "--search", "latent_dim=int:2:4", "--search",
            "learning_rate=logfloat:1e-3:1e-2", "--trials", "3", "--sampler", "random",
            *tiny_flags(idx_dir, 1, without=("--latent-dim", "--learning-rate"))]
    assert main(args) == 0
    states = trials_by_state(sweep_dir)
    assert len(states["COMPLETE"]) == 3
    for trial in states["COMPLETE"]:
        config = Config.load(sweep_dir / trial.user_attrs["run_dir"] / "config.toml")
        assert config.model.latent_dim == trial.params["latent_dim"] and 2 <= config.model.latent_dim <= 4
        assert config.train.learning_rate == trial.params["learning_rate"]
        summary = json.loads((sweep_dir / trial.user_attrs["run_dir"] / "summary.json").read_text())
        assert trial.value == summary["best_epoch_metrics"]["valid_elbo"]
    assert main(args) == 0 and len(trials_by_state(sweep_dir)["COMPLETE"]) == 3  # nothing more to do


def test_a_searchs_failed_trial_is_tried_again_by_a_rerun(idx_dir, tmp_path, monkeypatch):
    """The docs say failed points are tried once more on each rerun; a search's failed trial
    counted toward --trials, so a rerun did nothing and exited 1 again."""
    import pyro_vae.runs as runs

    real, calls = runs.train_run, []

    def train_run(config, run_dir, **kwargs):
        calls.append(run_dir.name)
        if len(calls) == 1:
            raise RuntimeError("disk on fire")
        return real(config, run_dir, **kwargs)

    monkeypatch.setattr(runs, "train_run", train_run)
    sweep_dir = tmp_path / "search"
    args = ["sweep", "--sweep-dir", str(sweep_dir), "--search", "latent_dim=int:2:4", "--trials", "2",
            "--sampler", "random", *tiny_flags(idx_dir, 1, without=("--latent-dim",))]
    assert main(args) == 1
    failed = calls[0]
    assert not (sweep_dir / failed / "summary.json").exists()
    monkeypatch.setattr(runs, "train_run", real)
    assert main(args) == 0  # the failed trial again, under its own name and settings; no third trial
    assert (sweep_dir / failed / "summary.json").is_file()
    states = trials_by_state(sweep_dir)
    assert sorted(t.user_attrs["run_dir"] for t in states["COMPLETE"]) == sorted(set(calls))
    (first_failure,) = states["FAIL"]
    (retried,) = [t for t in states["COMPLETE"] if t.user_attrs["run_dir"] == failed]
    assert retried.params == first_failure.params
    with open(sweep_dir / "results.csv", newline="") as handle:
        assert sorted(row["state"] for row in csv.DictReader(handle)) == ["COMPLETE", "COMPLETE"]
    assert main(args) == 0 and len(trials_by_state(sweep_dir)["COMPLETE"]) == 2  # nothing more to do
    # a point tried again is one of the --trials: a failure and its retry left room for one more
    state = optuna.trial.TrialState
    study = type("Study", (), {"get_trials": lambda self, deepcopy=False: [
        type("Trial", (), {"state": kind, "user_attrs": {"run_dir": name}})()
        for kind, name in ((state.FAIL, "a"), (state.COMPLETE, "a"), (state.COMPLETE, "b"))]})()
    spec = sweep.SweepSpec(Config(), search={"beta": sweep.SearchRange.parse("beta", "float:0.5:2")}, trials=3,
                           sampler="random")
    assert sweep._search_budget_left(study, spec)
    spec.trials = 2
    assert not sweep._search_budget_left(study, spec)


def test_results_csv_reads_the_metric_from_the_summary_as_its_other_numbers(tmp_path):
    """A run trained on after its trial (train --resume RUN --epochs 2): results.csv gave
    Optuna's value told at epoch 1 beside epoch 2's standard error and epochs from summary.json."""
    state = optuna.trial.TrialState
    run = tmp_path / "beta=1,seed=0"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"epochs": 2, "best_epoch": 2, "best_epoch_metrics": {
        "valid_elbo": -90.0, "valid_elbo_stderr": 0.5}}))
    trial = type("Trial", (), {"state": state.COMPLETE, "number": 0, "value": -100.0,  # told at epoch 1
                               "params": {"beta": 1.0, "seed": 0}, "user_attrs": {"run_dir": run.name}})()
    study = type("Study", (), {"get_trials": lambda self, deepcopy=False: [trial]})()
    (row,) = sweep.write_results(study, sweep.SweepSpec(Config(), {"beta": [1.0]}, [0]), tmp_path)
    assert (row["valid_elbo"], row["valid_elbo_stderr"], row["epochs"]) == (-90.0, 0.5, 2)
    with open(tmp_path / "results.csv", newline="") as handle:
        assert float(next(csv.DictReader(handle))["valid_elbo"]) == -90.0


def test_the_sweep_table_of_a_config_file(tmp_path, idx_dir):
    path = tmp_path / "base.toml"
    path.write_text(f'[data]\ndataset = "idx"\ndata_dir = "{idx_dir}"\n[train]\nbeta = 4\n'
                    '[sweep]\nseeds = 2\nmetric = "test_elbo"\n[sweep.grid]\nbeta = [0.5, 2]\nobjective = ["elbo"]\n')
    raw, table = sweep.split_sweep_table(sweep.read_toml(path), str(path))
    spec = sweep.build_spec(Config.from_dict(raw).validate(), table, ["beta=1"], [], None, None, None, None)
    assert spec.grid == {"beta": [1.0], "objective": ["elbo"]}  # the flag replaced the file's beta
    assert spec.seeds == [0, 1] and spec.metric == "test_elbo"
    assert [spec.run_name(p) for p in spec.points()] == ["beta=1,objective=elbo,seed=0", "beta=1,objective=elbo,seed=1"]


@pytest.mark.parametrize("text, words", [
    ('trials = 1.5\n[sweep.search]\nbeta = "float:0.5:2"', "[sweep] trials must be a whole number"),  # was 1 trial
    ('trials = "x"\n[sweep.search]\nbeta = "float:0.5:2"', "[sweep] trials must be a whole number"),  # ValueError
    ("seeds = 2.7\n[sweep.grid]\nbeta = [1, 2]", "[sweep] seeds must be a whole number of seeds or a list"),  # 2 seeds
    ("seeds = [1.5, 2]\n[sweep.grid]\nbeta = [1, 2]", "[sweep] seeds must be"),  # seeds 1 and 2
    ('seeds = ["a"]\n[sweep.grid]\nbeta = [1, 2]', "[sweep] seeds must be"),  # ValueError
    ("seeds = true\n[sweep.grid]\nbeta = [1, 2]", "[sweep] seeds must be"),  # one seed
    ('metric = ["a"]\n[sweep.grid]\nbeta = [1, 2]', "[sweep] metric must be the name of a metric"),  # TypeError
    ("grid = 3", "[sweep] grid must be a table"),  # AttributeError
    ("search = 3", "[sweep] search must be a table"),  # AttributeError
])
def test_a_sweep_table_value_of_the_wrong_type_is_one_sentence(tmp_path, text, words):
    """TOML gives each value as written: a float was cut to a whole number without a word, and a
    string, list or number where a table or name belongs ended in a traceback."""
    path = tmp_path / "base.toml"
    path.write_text(f"[sweep]\n{text}\n")
    with pytest.raises(ConfigError) as refused:
        raw, table = sweep.split_sweep_table(sweep.read_toml(path), str(path))
        sweep.build_spec(Config.from_dict(raw), table, [], [], None, None, None, None)
    assert str(refused.value).startswith(f"{path}: {words}")


@pytest.mark.parametrize("text, words", [
    ('[sweep.grid]\nbeta = [0.5, 1]\n"train.beta" = [2]',
     "[sweep] grid gives beta twice (beta and train.beta); list all its values under one key."),
    ('trials = 2\n[sweep.search]\n"train.beta" = "float:0.5:1"\nbeta = "float:1:2"',
     "[sweep] search gives beta twice (train.beta and beta); give its one range under one key."),
])
def test_a_key_given_twice_in_a_config_files_sweep_table_is_refused(tmp_path, text, words):
    """[sweep.grid] with both beta = [0.5, 1] and "train.beta" = [2] swept beta=2 alone, the other values
    dropped without a word (the command line refuses --grid beta twice); refused alike now."""
    path = tmp_path / "base.toml"
    path.write_text(f"[sweep]\n{text}\n")
    raw, table = sweep.split_sweep_table(sweep.read_toml(path), str(path))
    with pytest.raises(ConfigError) as refused:
        sweep.build_spec(Config.from_dict(raw), table, [], [], None, None, None, None)
    assert str(refused.value) == words


def test_a_grid_in_a_config_file_refuses_a_number_of_trials(tmp_path):
    with pytest.raises(ConfigError, match=r"\[sweep\] trials = 4 has no effect without a search"):
        sweep.build_spec(Config(), {"grid": {"beta": [1, 2]}, "trials": 4}, [], [], None, None, None, None)


@pytest.mark.parametrize("extra, words", [
    (["--grid", "betta=1,2"], "unknown option 'betta'; did you mean 'beta'"),
    (["--grid", "beta="], "the grid for beta is empty"),
    (["--grid", "beta=1,-1"], "beta must be at least 0"),
    (["--grid", "objective=elbo,iwea"], "unknown objective 'iwea'"),
    (["--grid", "beta=1", "--metric", "valid_iwae"], "do not all produce --metric valid_iwae"),
    (["--grid", "beta=1", "--metric", "valid_loglik"], "do not all produce --metric valid_loglik"),
    (["--grid", "beta=1", "--metric", "bogus"], "unknown --metric 'bogus'"),
    (["--grid", "beta=1", "--search", "latent_dim=int:2:4"], "not both"),
    (["--search", "latent_dim=int:9:4", "--trials", "2"], "LOW < HIGH"),
    (["--grid", "seed=1,2"], "--seeds"),
    # the second --grid of a key replaced the first's values: beta=1,2 then beta=3 trained beta=3 alone
    (["--grid", "beta=1,2", "--grid", "beta=3"],
     "--grid beta is given twice; list all its values in one --grid beta=V1,V2,..."),
    (["--grid", "train.beta=1,2", "--grid", "beta=3"], "--grid beta is given twice"),
    # both named beta=1: the second point resumed the first's run directory and failed, and its row was
    # dropped from results.csv ("1 runs complete, 0 failed", exit 0)
    (["--grid", "beta=1.0000001,1"], "the grid for beta has values that name one run directory (1.0000001 and 1.0 "
                                     "are both beta=1); give values that differ in their first 6 significant digits."),
    (["--search", "beta=float:0.5:1", "--search", "beta=float:1:2", "--trials", "2"],
     "--search beta is given twice; give it one range"),
    # a repeated choice doubled its weight (the grid refuses a repeated value)
    (["--search", "latent_dim=choice:4,8,4", "--trials", "2"],
     "--search latent_dim=choice:4,8,4 repeats a choice ([4, 8, 4]), which would be drawn twice as often as the "
     "others; list each choice once."),
    (["--search", "beta=choice:1,1.0,2", "--trials", "2"], "--search beta=choice:1,1.0,2 repeats a choice"),
    (["--grid", "beta=1,2", "--k", "3"], "--k 3 has no effect"),  # no run of the sweep would use it
    # a swept key without effect at some point: its runs would differ in name alone (k=3 and k=5
    # both trained the default k, the run named k=3 recording k = 5); refused as train refuses --k
    (["--grid", "k=3,5"], "the sweep's --grid k=3,5 has no effect at its point k=3: --k 3 has no effect with "
                          "--objective elbo"),
    (["--grid", "objective=elbo,iwae", "--grid", "k=3,5"],  # the two ELBO points would be one run
     "--grid k=3,5 has no effect at its point objective=elbo,k=3: --k 3 has no effect with --objective elbo"),
    (["--grid", "prior_components=3,7"], "--prior-components 3 has no effect with --prior standard"),
    (["--search", "k=int:3:5", "--trials", "2"], "the sweep's --search k=int:3:5 has no effect at its point k=3"),
    # its best trial would be chosen among numbers of different kinds (a helper's search drew all three)
    (["--search", "likelihood=choice:bernoulli,gaussian-learned,discretized-logistic", "--trials", "3"],
     "--search over likelihood would rank by one --metric numbers of different kinds"),
    # its best trial would be chosen by a bound whose tightness the searched key sets (an IWAE
    # bound is above the ELBO of the same model; a larger K is higher): searched, not refused
    (["--search", "objective=choice:elbo,iwae", "--trials", "2", "--metric", "selection"],
     "--search objective=choice:elbo,iwae would rank its trials by --metric selection, which is the validation "
     "ELBO at objective=elbo and the validation IWAE bound with K=5 at objective=iwae: a bound with more samples"),
    (["--search", "k=int:2:8", "--objective", "iwae", "--trials", "2", "--metric", "valid_iwae"],
     "which is the validation IWAE bound with K=2 at k=2 and the validation IWAE bound with K=8 at k=8"),
    (["--search", "select_k=int:2:8", "--select-by", "valid-loglik", "--trials", "2", "--metric", "selection"],
     "by importance sampling with K=2 at select_k=2 and the validation log p(x) by importance sampling with K=8"),
    # the test images would choose the settings whose test number they then report
    (["--search", "beta=float:0.5:2", "--trials", "2", "--metric", "test_elbo"],
     "a search steers its trials by --metric, and test_elbo is measured on the test images"),
    (["--search", "objective=choice:iwae,elbo", "--search", "k=int:2:8", "--trials", "2"],
     "--search k=int:2:8 has no effect at its point objective=elbo,k=2"),
    (["--grid", "beta=1,2", "--trials", "5"], "--trials 5 has no effect without a search"),  # a grid runs every point
    (["--grid", "beta=1,2", "--sampler", "random"], "--sampler random has no effect without a search"),
    (["--seeds", "2", "--trials", "3"], "--trials 3 has no effect without a search"),
    (["--grid", "beta=1,2", "--beta", "4"], "--beta 4 has no effect: the sweep sets beta in every run (--grid)"),
    (["--search", "beta=float:0.5:2", "--trials", "2", "--beta", "4"],
     "--beta 4 has no effect: the sweep sets beta in every run (--search)"),
    (["--grid", "beta=1,2", "--seeds", "2", "--seed", "5"], "--seed 5 has no effect with --seeds 2"),  # runs 0, 1
    (["--search", "beta=float:0.5:2", "--trials", "2", "--seeds", "1", "--seed", "5"], "--seed 5 has no effect"),
    # what a run logs or draws is no setting of its model: the same model trained under two names
    # (and a search's mlflow=true trials failed one by one where MLflow is not installed)
    (["--grid", "tensorboard=true,false"], "--grid tensorboard has no effect on the runs' models or numbers"),
    (["--grid", "figures=true,false"], "--grid figures has no effect on the runs' models or numbers"),
    (["--search", "mlflow=choice:true,false", "--trials", "2"],
     "--search mlflow has no effect on the runs' models or numbers"),
])
def test_bad_sweeps_are_refused_before_anything_is_written(idx_dir, tmp_path, capsys, extra, words):
    sweep_dir = tmp_path / "bad"
    assert main(["sweep", "--sweep-dir", str(sweep_dir), *extra, *tiny_flags(idx_dir)]) == 2
    assert words in capsys.readouterr().err
    assert not sweep_dir.exists()


@pytest.mark.parametrize("dataset, key, text", [("image-folder", "image_size", "int:16:32"),
                                               ("image-folder", "image_mode", "choice:rgb,grey"),
                                               ("idx", "data_dir", "choice:/data/a,/data/b")])
def test_a_search_over_which_images_or_how_many_pixels_is_refused(dataset, key, text):
    """--search image_size=int:16:32 of an image folder was accepted: its trials' validation ELBOs,
    nats per example over 768 to 3,072 pixel values, were ranked alike, so the smallest images won."""
    base = Config()
    base.data.dataset, base.data.data_dir, base.model.likelihood = dataset, "/data/a", "discretized-logistic"
    with pytest.raises(ConfigError, match=rf"^--search over {key} would rank by one --metric, in nats per example, "
                                          "numbers of other images"):
        sweep.SweepSpec(base, search={key: sweep.SearchRange.parse(key, text)}, trials=2, sampler="tpe").validate()
    base.data.dataset = "fashion-mnist"  # where the files of a named data set are: the same images
    sweep.SweepSpec(base, search={"data_dir": sweep.SearchRange.parse("data_dir", "choice:/data/a,/data/b")},
                    trials=2, sampler="tpe").validate()


def test_a_learned_sigma_below_its_floor_at_a_point_of_a_grid_is_refused_not_set_back(idx_dir, tmp_path, capsys):
    """At the learned point the sigma would start at its floor 0.001, not at 0.0005; a sweep sets an option of
    no effect back to its default (0.1), which would train that point with a sigma nobody asked for."""
    sweep_dir = tmp_path / "scale"
    assert main(["sweep", "--sweep-dir", str(sweep_dir), "--grid", "likelihood=gaussian,gaussian-learned",
                 "--likelihood-scale", "0.0005", *tiny_flags(idx_dir, without=("--binarize",))]) == 2
    assert ("--likelihood-scale 0.0005 cannot be the starting sigma of --likelihood gaussian-learned"
            in capsys.readouterr().err)
    assert not sweep_dir.exists()


@pytest.mark.parametrize("storage, words", [
    ("foo://bar", "Can't load plugin: sqlalchemy.dialects:foo"),  # was NoSuchModuleError's traceback, exit 1
    ("not a url", "Could not parse SQLAlchemy URL"),
    ("sqlite:////nonexistent/folder/study.db", "unable to open database file"),
])
def test_a_storage_that_cannot_be_opened_is_one_sentence_and_writes_nothing(idx_dir, tmp_path, capsys, storage,
                                                                             words):
    sweep_dir = tmp_path / "sw"
    assert main(["sweep", "--sweep-dir", str(sweep_dir), "--grid", "beta=1,2", "--storage", storage,
                 *tiny_flags(idx_dir)]) == 2
    err = capsys.readouterr().err
    assert f"--storage {storage} cannot be opened ({words}" in err and "leave --storage out" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not sweep_dir.exists()  # no sweep.json left behind to make a rerun "a different sweep"


def test_a_storage_url_that_opens_keeps_the_study_there(idx_dir, tmp_path):
    base = Config()
    base.data.dataset, base.data.data_dir = "idx", str(idx_dir)
    spec = sweep.SweepSpec(base.validate(), {"beta": [0.5, 1.0]}, [0]).validate()
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    study = sweep.create_sweep(spec, tmp_path / "sw", storage=url, log=lambda s: None)
    assert (tmp_path / "elsewhere.db").is_file() and not (tmp_path / "sw" / "study.db").exists()
    assert len(study.get_trials(deepcopy=False)) == 2  # both points queued in the given storage


def test_a_sweep_dir_under_a_file_is_refused_in_one_sentence_before_anything_runs(idx_dir, tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file")
    sweep_dir = tmp_path / "blocker" / "sweep"
    assert main(["sweep", "--sweep-dir", str(sweep_dir), "--grid", "beta=1,2", *tiny_flags(idx_dir)]) == 2
    err = capsys.readouterr().err
    assert f"--sweep-dir {sweep_dir / 'sweep.json'}: {tmp_path / 'blocker'} is a file, not a folder" in err
    assert len(err.strip().splitlines()) == 1 and (tmp_path / "blocker").read_text() == "a file"


def test_a_sweep_dir_made_for_another_grid_is_refused_and_left_alone(idx_dir, tmp_path, capsys):
    sweep_dir = tmp_path / "made"
    base = Config()
    base.data.dataset, base.data.data_dir = "idx", str(idx_dir)
    spec = sweep.SweepSpec(base.validate(), {"beta": [0.5, 1.0]}, [0]).validate()
    sweep.create_sweep(spec, sweep_dir, log=lambda s: None)
    before = {p.name: p.read_bytes() for p in sweep_dir.iterdir()}
    args = ["sweep", "--sweep-dir", str(sweep_dir), "--dataset", "idx", "--data-dir", str(idx_dir)]
    assert main([*args, "--grid", "beta=0.5,2"]) == 2
    assert "holds a different sweep (its grid differ)" in capsys.readouterr().err
    assert main([*args, "--grid", "beta=0.5,1", "--epochs", "3"]) == 2
    assert "its base differ" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in sweep_dir.iterdir()} == before


def test_train_into_a_sweep_dir_is_refused_and_leaves_it_alone(idx_dir, tmp_path, capsys):
    """The reverse of a sweep into a run directory: train --run-dir SWEEP_DIR wrote its
    checkpoints beside study.db and sweep.json."""
    sweep_dir = tmp_path / "made"
    base = Config()
    base.data.dataset, base.data.data_dir = "idx", str(idx_dir)
    sweep.create_sweep(sweep.SweepSpec(base.validate(), {"beta": [0.5, 1.0]}, [0]).validate(), sweep_dir,
                       log=lambda s: None)
    before = {p.name: p.read_bytes() for p in sweep_dir.iterdir()}
    assert main(["train", "--run-dir", str(sweep_dir), *tiny_flags(idx_dir, epochs=1)]) == 2
    err = capsys.readouterr().err
    assert f"{sweep_dir} is a sweep directory (it holds sweep.json and study.db)" in err
    assert "choose a new --run-dir" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in sweep_dir.iterdir()} == before


def test_a_grid_over_run_paths_names_each_run_one_folder_of_the_sweep(idx_dir, tmp_path, capsys):
    """--grid init_from=/a/r1,/a/r2 named its runs SWEEP/init_from=/a/r1,seed=0: folders inside
    folders, which compare and the sweep figure never found (the sweep trained every run, then
    ended with "no finished runs to compare", exit 2)."""
    sources = [tmp_path / "sources" / name for name in ("r1", "r2")]
    for seed, source in enumerate(sources):
        assert main(["train", "--run-dir", str(source), "--seed", str(seed), "--figures", "false",
                     *tiny_flags(idx_dir, epochs=1)]) == 0
    sweep_dir = tmp_path / "fine-tune"
    assert main(["sweep", "--sweep-dir", str(sweep_dir), "--grid", f"init_from={sources[0]},{sources[1]}",
                 "--figures", "false", *tiny_flags(idx_dir, epochs=1)]) == 0
    runs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert runs == [f"init_from={str(source).replace('/', '%2F')},seed=0" for source in sources]
    assert all((sweep_dir / run / "summary.json").is_file() for run in runs)
    assert (sweep_dir / "sweep.png").is_file()
    from pyro_vae.experiments.compare import collect_runs

    records = collect_runs([sweep_dir])
    assert sorted(r.settings["init_from"] for r in records) == sorted(map(str, sources))


def test_optuna_missing_is_one_sentence_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ConfigError, match=r"pip install 'pyro-vae\[sweep\]'"):
        sweep.optuna_module()


def test_an_option_without_effect_at_a_point_goes_back_to_its_default_there():
    base = Config()
    base.train.k = 2  # used by the IWAE points only
    spec = sweep.SweepSpec(base, {"objective": ["elbo", "iwae"]}, [0]).validate()
    elbo, iwae = (spec.config_for(point) for point in spec.points())
    assert (elbo.train.objective, elbo.train.k) == ("elbo", Config().train.k)
    assert (iwae.train.objective, iwae.train.k) == ("iwae", 2)
    assert base.train.k == 2 and base.data.binarize == "auto"  # the base itself is left as given


def test_a_swept_key_is_accepted_where_every_point_uses_it():
    base = Config()
    base.train.objective = "iwae"
    spec = sweep.SweepSpec(base, {"k": [3, 5]}, [0]).validate()
    assert [spec.config_for(p).train.k for p in spec.points()] == [3, 5]
    spec = sweep.SweepSpec(Config(), {"objective": ["iwae", "iwae-dreg"], "k": [3, 5]}, [0]).validate()
    assert len({(c.train.objective, c.train.k) for c in map(spec.config_for, spec.points())}) == 4


def test_a_search_over_keys_that_leave_its_metric_alike_is_accepted():
    """The check of what a search's metric measures refuses only where it differs."""
    base = Config()
    base.train.objective = "iwae"
    for search, metric in (({"k": "int:2:8"}, "valid_elbo"), ({"objective": "choice:iwae,iwae-dreg"}, "selection"),
                           ({"objective": "choice:elbo,analytic-kl"}, "selection"), ({"beta": "float:0.5:2"},
                                                                                     "valid_iwae")):
        ranges = {key: sweep.SearchRange.parse(key, text) for key, text in search.items()}
        sweep.SweepSpec(base, search=ranges, trials=2, metric=metric, sampler="tpe").validate()
    config = Config()
    config.train.objective, config.train.k = "iwae-dreg", 7
    assert sweep.metric_measure(config, "selection") == "the validation IWAE bound with K=7"
    config.train.select_by = "valid-elbo"
    assert sweep.metric_measure(config, "selection") == "the validation ELBO"


def test_a_search_chooses_among_lists_separated_as_a_grids():
    """--search "hidden_dims=choice:32;16,8" was refused ("must be a whole number, not
    '32;16'"): a list-valued key's choices could be single layers only."""
    search = {"hidden_dims": sweep.SearchRange.parse("hidden_dims", "choice:32;16,8")}
    assert search["hidden_dims"].choices == ["32", "16,8"]
    spec = sweep.SweepSpec(Config(), search=search, trials=2, sampler="random").validate()
    assert spec.config_for({"hidden_dims": "16,8", "seed": 0}).model.hidden_dims == [16, 8]
    assert sweep.SearchRange.parse("activation", "choice:relu,elu").choices == ["relu", "elu"]


def test_a_sweep_can_optimise_the_validation_log_likelihood_of_runs_that_select_by_it():
    config = Config()
    assert not sweep.metric_available(config, "valid_loglik")
    config.train.select_by = "valid-loglik"
    assert sweep.metric_available(config, "valid_loglik")
    config.model.model = "m2"
    assert not sweep.metric_available(config, "valid_loglik")
    summary = {"best_valid_criterion": -91.5, "best_epoch_metrics": {"valid_loglik": -91.5, "valid_elbo": -95.0}}
    assert sweep.metric_value(summary, "valid_loglik") == -91.5


def test_the_library_leaves_optunas_logging_as_its_user_set_it(tmp_path):
    """open_study used to set Optuna's verbosity to WARNING for the whole process: a library
    changes no global state of its user's; the CLI quiets it (its own choice)."""
    import optuna

    before = optuna.logging.get_verbosity()
    try:
        optuna.logging.set_verbosity(optuna.logging.DEBUG)
        spec = sweep.build_spec(Config(), {}, ["beta=1,2"], [], None, None, None, None)
        sweep.open_study(spec, tmp_path, None)
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)


def test_a_trials_line_says_what_its_number_is_and_of_which_data():
    """The line after each trial said "selection -545.3309 ± 0.0207 nats per example": not which
    bound selected (an IWAE bound here), nor the kind of data its log p(x) is a mass on."""
    summary = {"best_valid_criterion": -545.33094, "selection": "best validation IWAE bound (K=5)",
               "kind": "probability mass on binary data", "quantity": "log p(x)",
               "best_epoch_metrics": {"valid_elbo": -546.2, "valid_elbo_stderr": 0.03, "valid_iwae": -545.33094,
                                      "valid_iwae_stderr": 0.0207}}
    assert sweep.describe_metric(summary, "selection") == (
        "selection -545.3309 ± 0.0207 nats per example (validation IWAE bound (K=5): a lower bound on log p(x), "
        "probability mass on binary data)")
    assert sweep.describe_metric(summary, "valid_elbo") == (
        "valid_elbo -546.2000 ± 0.0300 nats per example (a lower bound on log p(x), probability mass on binary data)")
    summary["best_epoch_metrics"] = {"valid_loglik": -91.5, "valid_loglik_stderr": 0.5}
    assert sweep.describe_metric({**summary, "quantity": "log p(x | y)"}, "valid_loglik") == (
        "valid_loglik -91.5000 ± 0.5000 nats per example (an importance-sampled estimate of log p(x | y), "
        "probability mass on binary data)")
    assert sweep.describe_metric({"valid_accuracy": 0.9, "valid_accuracy_stderr": 0.01}, "valid_accuracy") == (
        "valid_accuracy 0.9000 ± 0.0100 (a fraction of the images)")


def test_two_sweeps_of_one_name_in_one_storage_keep_apart_and_one_sweep_is_one_study(idx_dir, tmp_path):
    """The study was named after the sweep directory alone: two sweeps called "b" in two folders
    with one --storage database shared a study, each queueing the other's points."""
    base = Config()
    base.data.dataset, base.data.data_dir = "idx", str(idx_dir)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = sweep.SweepSpec(base.validate(), {"beta": [0.5, 1.0]}, [0]).validate()
    other = sweep.SweepSpec(base.validate(), {"latent_dim": [2, 3, 4]}, [0]).validate()
    a = sweep.create_sweep(first, tmp_path / "one" / "b", storage=url, log=lambda s: None)
    b = sweep.create_sweep(other, tmp_path / "two" / "b", storage=url, log=lambda s: None)
    assert a.study_name != b.study_name and a.study_name.startswith("b-")
    assert len(a.get_trials(deepcopy=False)) == 2 and len(b.get_trials(deepcopy=False)) == 3
    recorded = json.loads((tmp_path / "one" / "b" / "sweep.json").read_text())
    assert recorded["study"] == a.study_name
    # the same sweep run from another machine's folder of that name joins the same study
    assert sweep.study_name(first, tmp_path / "three" / "b") == a.study_name
    # a sweep begun before the name was recorded keeps the study it was begun in
    del recorded["study"]
    (tmp_path / "one" / "b" / "sweep.json").write_text(json.dumps(recorded))
    assert sweep.study_name(first, tmp_path / "one" / "b") == "b"
