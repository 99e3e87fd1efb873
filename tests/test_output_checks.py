"""Outputs refused before anything is computed, and the options that would have no effect."""

import json
from pathlib import Path

import pytest

from pyro_vae.cli import main

TINY = ["--dataset", "idx", "--latent-dim", "2", "--hidden-dims", "16", "--epochs", "1",
        "--batch-size", "100", "--no-progress", "--figures", "false"]


@pytest.fixture(scope="module")
def run(idx_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("outputs") / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run_dir), *TINY]) == 0
    return run_dir


def _refused(argv, capsys, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def test_evaluate_refuses_an_output_it_could_not_write_before_the_estimate(run, capsys, monkeypatch):
    import pyro_vae.inference.dequantize as dequantize
    import pyro_vae.runs as runs

    def never(*args, **kwargs):
        raise AssertionError("computed before the output was checked")

    monkeypatch.setattr(dequantize, "score_log_likelihood", never)
    monkeypatch.setattr(runs, "evaluate_run", never)
    blocked = run / "config.toml" / "sub" / "x.json"  # a file where a folder would have to be
    for k in ("5", "0"):
        err = _refused(["evaluate", str(run), "--k", k, "-o", str(blocked)], capsys, "-o",
                       f"{run / 'config.toml'} is a file, not a folder")
        assert "x_examples.npz" not in err
    _refused(["evaluate", str(run), "-o", str(run)], capsys, f"-o {run} is a directory")
    (run.parent / "taken_examples.npz").mkdir()  # the per-example file's path is checked too
    _refused(["evaluate", str(run), "--k", "5", "-o", str(run.parent / "taken.json")], capsys, "taken_examples.npz")
    assert not (run.parent / "taken.json").exists()


def test_an_output_that_is_a_link_or_a_device_is_refused_not_replaced(run, capsys):
    """Outputs are renamed into place: a pipe (as /dev/null is a device) or a link there would
    be replaced by a plain file, not written through."""
    import os
    import stat

    pipe = run.parent / "pipe.json"
    os.mkfifo(pipe)
    _refused(["evaluate", str(run), "-o", str(pipe)], capsys, f"-o {pipe} is not a regular file")
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)
    target = run.parent / "target.json"
    target.write_text("kept")
    link = run.parent / "link.json"
    link.symlink_to(target)
    _refused(["evaluate", str(run), "-o", str(link)], capsys, f"-o {link} is a symbolic link", "own path")
    assert link.is_symlink() and target.read_text() == "kept"
    figure_link = run.parent / "link.png"
    figure_link.symlink_to(target)
    _refused(["sample", str(run), "-o", str(figure_link)], capsys, "symbolic link")
    assert figure_link.is_symlink() and target.read_text() == "kept"


@pytest.mark.parametrize("name", ["x.txt", "x"])
def test_a_figure_name_matplotlib_cannot_write_is_refused_before_drawing(run, twin, name, capsys, monkeypatch):
    import pyro_vae.plots as plots

    monkeypatch.setattr(plots, "plot_samples", lambda *a, **k: pytest.fail("drawn before the name was checked"))
    found = "no extension" if name == "x" else "extension .txt"
    _refused(["sample", str(run), "-o", str(run.parent / name)], capsys, found, ".png", "-o")
    _refused(["plot", str(run), str(twin), "--kind", "curves", "-o", str(run.parent / name)], capsys, found)
    assert not (run.parent / name).exists()


def test_compare_of_one_run_shows_its_own_standard_errors_over_the_images(run, capsys):
    import csv

    assert main(["evaluate", str(run), "--k", "3", "--limit", "20"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    loglik = json.loads((run / "loglik.json").read_text())
    capsys.readouterr()
    prefix = run.parent / "cmp"
    assert main(["compare", str(run), "-o", str(prefix)]) == 0
    out = capsys.readouterr().out
    assert f"{summary['test_elbo']:.2f} ± {summary['test_elbo_stderr']:.2f}" in out
    assert f"{loglik['log_likelihood_mean']:.2f} ± {loglik['log_likelihood_stderr']:.2f}" in out
    with open(f"{prefix}.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["test ELBO se"]) == summary["test_elbo_stderr"]
    assert float(row["test log p(x) se"]) == loglik["log_likelihood_stderr"]
    assert row["se over"] == "the images (one run)"
    assert row["test log p(x) K"] == "3" and row["test log p(x) images"] == "20 of test, random"


@pytest.mark.parametrize("extra,option", [
    (["--density"], "--density"),
    (["--k", "3", "--density"], "--density"),  # a Bernoulli model on binary images: a mass, scored as it is
    (["--batch-size", "10"], "--batch-size"),
    (["--fidelity-samples", "5"], "--fidelity-samples"),
    (["--fidelity-images", "5"], "--fidelity-images"),
    (["--classifier-cache", "/tmp"], "--classifier-cache"),
    (["--subset", "first"], "--subset"),
    (["--label-fidelity", "--limit", "5"], "--limit"),  # its images are --fidelity-images
    (["--label-fidelity", "--limit", "5", "--subset", "first"], "--limit"),
    (["--limit", "201"], "the 200 images of the test split"),
])
def test_evaluate_refuses_an_option_that_has_no_effect(run, extra, option, capsys, monkeypatch):
    import pyro_vae.inference.dequantize as dequantize

    monkeypatch.setattr(dequantize, "score_log_likelihood", lambda *a, **k: pytest.fail("computed"))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    _refused(["evaluate", str(run), *extra], capsys, option)
    assert before == {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_resume_with_no_more_epochs_trains_and_writes_nothing(run, capsys):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(run), "--epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "nothing to train" in out and "has 1 epochs" in out and "--epochs above 1" in out
    assert before == {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_resume_of_a_run_stopped_early_by_the_same_patience_trains_and_writes_nothing(idx_dir, tmp_path, capsys):
    # it used to evaluate again and rewrite summary.json (its train_seconds_this_session lost) and the figures
    run_dir = tmp_path / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run_dir), *TINY[:-2], "--figures", "false",
                 "--epochs", "6", "--patience", "1", "--learning-rate", "1e-6"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped_early"] and summary["epochs"] == 2  # epoch 2 no better than epoch 1
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    for more in ([], ["--epochs", "8"]):
        assert main(["train", "--resume", str(run_dir), "--no-progress", *more]) == 0
        assert ("nothing to train: " f"{run_dir} stopped early (--patience 1) after 2 epochs and has its summary; give "
                "--patience above 1 to train on (nothing was written).") in capsys.readouterr().out
    assert before == {p.name: p.read_bytes() for p in run_dir.iterdir()}


def test_resume_with_no_more_epochs_lists_no_figure_as_drawn(idx_dir, tmp_path, capsys):
    """A finished run with figures: resuming it to the epochs it has draws nothing, so the
    console names no figure (a `figure: PATH` line reads as one just drawn)."""
    run_dir = tmp_path / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run_dir), *TINY[:-2]]) == 0
    assert "figure: " in capsys.readouterr().out
    assert main(["train", "--resume", str(run_dir), "--epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "nothing to train" in out and "figure" not in out, out


def test_small_messages(run, tmp_path, capsys):
    from pyro_vae.cli import build_parser

    (tmp_path / "bad.toml").write_text("[train]\nepoch = 3\n")
    err = _refused(["train", "--config", str(tmp_path / "bad.toml"), "--run-dir", str(tmp_path / "r")], capsys,
                   "did you mean 'epochs'?")
    assert "?." not in err
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    (mlflow,) = [a for a in train._actions if "--mlflow" in a.option_strings]
    assert "mlflow.db" in mlflow.help and "mlruns" not in mlflow.help
    assert main(["compare", str(run), "--reference", str(tmp_path)]) == 2  # refused before the table is printed
    captured = capsys.readouterr()
    assert captured.out == "" and "lacks config.toml and checkpoint_last.pt" in captured.err
    (tmp_path / "config.toml").write_bytes((run / "config.toml").read_bytes())
    _refused(["evaluate", str(tmp_path)], capsys, "(it lacks checkpoint_last.pt)")


# -- one rule for every command's output: a missing folder is made (mkdir -p) -----------------

@pytest.fixture(scope="module")
def twin(run, tmp_path_factory):
    """A second run (a copy): the commands that draw several runs are given two, each once."""
    import shutil

    return shutil.copytree(run, tmp_path_factory.mktemp("outputs") / "twin")


def _writes(run: Path, out: Path, idx_dir: Path, twin: Path) -> dict:
    """Each command that writes a file, its command line writing into ``out``, and the files it
    writes there."""
    return {
        "train": (["train", "--data-dir", str(idx_dir), "--run-dir", str(out / "run"), *TINY],
                  ["run/summary.json"]),
        "evaluate": (["evaluate", str(run), "-o", str(out / "e.json")], ["e.json"]),
        "evaluate --k": (["evaluate", str(run), "--k", "2", "--limit", "5", "-o", str(out / "l.json")],
                         ["l.json", "l_examples.npz"]),
        "sample": (["sample", str(run), "-n", "4", "-o", str(out / "s.png")], ["s.png"]),
        "reconstruct": (["reconstruct", str(run), "-o", str(out / "r.png")], ["r.png"]),
        "plot": (["plot", str(run), "--kind", "curves", "-o", str(out / "c.png")], ["c.png"]),
        "plot overlaid": (["plot", str(run), str(twin), "--kind", "curves", "-o", str(out / "o.png")], ["o.png"]),
        "plot side by side": (["plot", str(run), str(twin), "--kind", "latent", "--limit", "20", "-o",
                               str(out / "l.png")], ["l.png"]),
        "compare": (["compare", str(run), "-o", str(out / "cmp")], ["cmp.csv", "cmp.md"]),
        "compare --figure": (["compare", str(run), str(twin), "--figure", str(out / "f.png")], ["f.png"]),
    }


COMMANDS = ["train", "evaluate", "evaluate --k", "sample", "reconstruct", "plot", "plot overlaid",
            "plot side by side", "compare", "compare --figure"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_makes_its_missing_output_folders(run, twin, idx_dir, command, tmp_path, capsys):
    out = tmp_path / "missing" / "deeper"
    argv, files = _writes(run, out, idx_dir, twin)[command]
    assert main(argv) == 0, capsys.readouterr().err
    for name in files:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_an_output_under_a_file_in_one_sentence_writing_nothing(run, twin, idx_dir, command,
                                                                                     tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file, not a folder")
    argv, _ = _writes(run, tmp_path / "blocker" / "sub", idx_dir, twin)[command]
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    words = (["cannot create the run directory"] if command == "train" else
             [f"{tmp_path / 'blocker'} is a file, not a folder", "--figure" if "figure" in command else "-o"])
    _refused(argv, capsys, *words)
    assert (tmp_path / "blocker").read_text() == "a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
    assert before == {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_a_damaged_json_record_is_one_sentence_and_resume_writes_the_summary_again(run, tmp_path, capsys):
    """A summary.json or loglik.json cut short: compare names the file and how to write it
    again (it was a JSONDecodeError traceback); train --resume, which also tracebacked,
    rebuilds summary.json from checkpoint_last.pt."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    whole = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").write_text((run / "summary.json").read_text()[:100])
    _refused(["compare", str(copy)], capsys, f"{copy / 'summary.json'} is not a readable JSON file",
             f"pyro-vae train --resume {copy}")
    assert main(["train", "--resume", str(copy), "--epochs", "1", "--no-progress"]) == 0
    assert json.loads((copy / "summary.json").read_text())["test_elbo"] == whole["test_elbo"]
    (copy / "loglik.json").write_text("[1, 2]")
    _refused(["compare", str(copy)], capsys, "does not hold a JSON object", f"pyro-vae evaluate {copy} --k K")


def test_a_damaged_metrics_csv_is_one_sentence_and_resume_writes_it_again(run, tmp_path, capsys):
    """metrics.csv with a cell that is not a number (or a ragged row) was a ValueError
    traceback in plot --kind curves and compare; now one sentence, and train --resume of the
    finished run, which wrote nothing, rebuilds it from checkpoint_last.pt."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    whole = (copy / "metrics.csv").read_text()
    for damaged in ("epoch,train_objective\n1,abc\n", "epoch,train_objective\n1,2,3\n"):
        (copy / "metrics.csv").write_text(damaged)
        for argv in (["plot", str(copy), "--kind", "curves", "-o", str(tmp_path / "c.png")], ["compare", str(copy)]):
            _refused(argv, capsys, f"{copy / 'metrics.csv'} is damaged", f"pyro-vae train --resume {copy}")
    assert main(["train", "--resume", str(copy), "--epochs", "1", "--no-progress"]) == 0
    assert (copy / "metrics.csv").read_text() == whole


def test_no_output_overwrites_the_record_of_another_run_or_a_sweep(run, capsys, tmp_path):
    """`evaluate RUN_A -o RUN_B/checkpoint_last.pt` once replaced RUN_B's checkpoint with JSON and
    exited 0; every -o now refuses the files any run or sweep directory is read back from."""
    import shutil

    other = tmp_path / "other"
    shutil.copytree(run, other)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    (sweep / "study.db").write_bytes(b"db")
    before = {p: p.read_bytes() for p in [*other.iterdir(), *sweep.iterdir()] if p.is_file()}
    for name in ("checkpoint_last.pt", "config.toml", "summary.json", "metrics.csv"):
        _refused(["evaluate", str(run), "--limit", "10", "-o", str(other / name)], capsys, name, str(other), "-o")
        _refused(["evaluate", str(run), "--k", "2", "--limit", "10", "-o", str(other / name)], capsys, name)
    _refused(["evaluate", str(run), "--limit", "10", "-o", str(sweep / "study.db")], capsys, "sweep", "study.db")
    _refused(["compare", str(run), "-o", str(sweep / "results")], capsys, "results.csv")
    _refused(["plot", str(run), "--kind", "curves", "-o", str(other / "checkpoint_best.pt")], capsys,
             "checkpoint_best.pt")
    assert {p: p.read_bytes() for p in before} == before
    # a file of the same name in a folder that is no run's is written as asked
    assert main(["evaluate", str(run), "--limit", "10", "-o", str(tmp_path / "summary.json")]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["examples"] == 10


def test_no_output_overwrites_the_per_image_values_compare_pairs_runs_by(run, capsys, tmp_path):
    """`evaluate RUN --k 2 -o RUN/loglik_examples.npz` wrote its JSON over the per-image values of the run's
    loglik.json and exited 0; `compare` then failed on the run ("cannot read per-example values")."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["evaluate", str(copy), "--k", "2", "--limit", "10", "-o", str(copy / "loglik.json")]) == 0
    kept = (copy / "loglik_examples.npz").read_bytes()
    for argv in (["--k", "2", "--limit", "10"], ["--limit", "10"]):
        _refused(["evaluate", str(copy), *argv, "-o", str(copy / "loglik_examples.npz")], capsys,
                 "loglik_examples.npz", "-o")
    _refused(["plot", str(copy), "--kind", "curves", "-o", str(copy / "loglik_examples.npz")], capsys,
             "loglik_examples.npz")
    assert (copy / "loglik_examples.npz").read_bytes() == kept
    capsys.readouterr()
    # the run's own loglik.json, named to replace it, still writes its per-image values
    assert main(["evaluate", str(copy), "--k", "3", "--limit", "10", "-o", str(copy / "loglik.json")]) == 0
    assert (copy / "loglik_examples.npz").read_bytes() != kept
    assert main(["compare", str(copy)]) == 0


def test_an_elbo_is_not_written_where_compare_reads_a_runs_log_p_x(run, capsys, tmp_path):
    """`evaluate RUN --limit 10 -o RUN/loglik.json` wrote the ELBO's result there (exit 0), and compare showed the
    ELBO's bits/dim in the run's "test log p(x) bits/dim" column."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["evaluate", str(copy), "--k", "2", "--limit", "10", "-o", str(copy / "loglik.json")]) == 0
    kept = (copy / "loglik.json").read_bytes()
    _refused(["evaluate", str(copy), "--limit", "10", "-o", str(copy / "loglik.json")], capsys,
             "compare reads that run's log p(x)", "ELBO", "-o another path")
    assert (copy / "loglik.json").read_bytes() == kept
    # a loglik.json in a folder that is no run's is written as asked
    assert main(["evaluate", str(copy), "--limit", "10", "-o", str(tmp_path / "loglik.json")]) == 0
    assert json.loads((tmp_path / "loglik.json").read_text())["examples"] == 10
    # nor where it reads the run's label fidelity (an ELBO or a log p(x) written as the run's label_fidelity.json)
    for extra, what in (([], "ELBO"), (["--k", "2"], "log p(x) estimate")):
        _refused(["evaluate", str(copy), "--limit", "10", *extra, "-o", str(copy / "label_fidelity.json")], capsys,
                 "compare reads that run's label fidelity (evaluate --label-fidelity)", what, "-o another path")
        assert not (copy / "label_fidelity.json").exists()


def test_a_limit_above_a_later_runs_split_is_refused_before_the_first_run_is_scored(run, idx_dir, capsys, tmp_path):
    """`evaluate RUN_A RUN_B --k 2 --limit 150 --split train`, RUN_B trained on 100 images: RUN_A was estimated and
    its loglik.json written, then RUN_B's --limit refused (exit 2), though every run is checked first."""
    import shutil

    first, small = tmp_path / "first", tmp_path / "small"
    shutil.copytree(run, first)
    for name in ("loglik.json", "loglik_examples.npz"):
        (first / name).unlink(missing_ok=True)
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(small), *TINY, "--train-limit", "100"]) == 0
    capsys.readouterr()
    _refused(["evaluate", str(first), str(small), "--k", "2", "--limit", "150", "--split", "train"], capsys,
             "--limit 150 is more than the 100 images of the train split")
    assert not (first / "loglik.json").exists() and not (small / "loglik.json").exists()


def test_a_result_of_other_options_is_not_replaced_without_being_named(run, capsys, tmp_path):
    """A quick `evaluate RUN --k 2 --limit 5` silently replaced an hour's K=5000 estimate in loglik.json."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["evaluate", str(copy), "--k", "3", "--limit", "20"]) == 0
    kept = {name: (copy / name).read_bytes() for name in ("loglik.json", "loglik_examples.npz")}
    assert json.loads(kept["loglik.json"])["request"]["k"] == 3
    differing = ("k 3, now 2", "limit 20, now 10", "seed 0, now 1", "split 'test', now 'valid'",
                 "checkpoint 'best', now 'last'")  # the message names the option that differs
    for argv, which in zip((["--k", "2", "--limit", "20"], ["--k", "3", "--limit", "10"],
                            ["--k", "3", "--limit", "20", "--seed", "1"], ["--k", "3", "--limit", "20", "--split", "valid"],
                            ["--k", "3", "--limit", "20", "--checkpoint", "last"]), differing):
        err = _refused(["evaluate", str(copy), *argv], capsys, "already holds a log p(x) estimate with K=3 on 20 test "
                       "images of the best checkpoint", f"-o {copy / 'loglik.json'} to replace it", f"({which})")
        assert {name: (copy / name).read_bytes() for name in kept} == kept, argv
    capsys.readouterr()
    assert main(["evaluate", str(copy), "--k", "3", "--limit", "20"]) == 0  # the same request: measured again
    assert main(["evaluate", str(copy), "--k", "2", "--limit", "20", "-o", str(copy / "loglik.json")]) == 0  # named
    assert json.loads((copy / "loglik.json").read_text())["k"] == 2
    assert main(["evaluate", str(copy), "--limit", "20"]) == 0  # the ELBO's own file, likewise kept apart
    _refused(["evaluate", str(copy), "--limit", "10"], capsys, "already holds an evaluation on 20 test images")


def test_one_run_counted_twice_or_a_figure_of_one_run_is_refused(run, twin, tmp_path, capsys):
    """`compare RUN RUN --figure` drew the run as two seeds of its setting; `compare RUN --figure` one point at x=None."""
    out = tmp_path / "f.png"
    for argv, words in ((["compare", str(run), str(run)], ["is given twice"]),
                        (["plot", str(run), str(run), "--kind", "curves", "-o", str(out)], ["is given twice"]),
                        (["compare", str(run), "--figure", str(out)], ["is one run", "leave out the figure"])):
        _refused(argv, capsys, *words)
        assert not out.exists()
    # refused before the table is printed or written
    assert main(["compare", str(run), "--figure", str(out), "-o", str(tmp_path / "table")]) == 2
    assert capsys.readouterr().out == "" and not list(tmp_path.glob("table*"))
    assert main(["compare", str(run), str(twin), "--figure", str(out)]) == 0 and out.stat().st_size > 0


def test_the_protected_records_are_the_files_runs_and_sweeps_are_read_from():
    """outputs.RECORDS names them as strings (outputs imports nothing of runs): kept equal to their owners' names."""
    from pyro_vae import runs
    from pyro_vae.experiments import sweep
    from pyro_vae.inference.checkpoint import BEST, LAST
    from pyro_vae.outputs import RECORDS

    markers, records = RECORDS["run"]
    assert set(markers) == {runs.CONFIG, LAST}
    from pyro_vae.experiments.compare import examples_path

    assert {runs.CONFIG, LAST, BEST, runs.METRICS, runs.SUMMARY, runs.LABELLED, runs.CODES,
            examples_path(Path("loglik.json")).name} == records
    assert RECORDS["sweep"] == ((sweep.SWEEP_FILE,), frozenset({sweep.SWEEP_FILE, sweep.STUDY_DB, sweep.RESULTS}))
