"""The pyro-vae command end to end on a tiny data set, and its usage errors."""

import json
import shutil
import subprocess
import sys

import pytest
from matplotlib.image import imread

from pyro_vae.cli import main

TINY = ["--dataset", "idx", "--latent-dim", "4", "--hidden-dims", "64", "--epochs", "2",
        "--batch-size", "64", "--no-progress"]


@pytest.fixture(scope="module")
def trained(idx_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *TINY]) == 0
    return run


def test_train_writes_the_run_directory(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"config.toml", "metrics.csv", "checkpoint_last.pt", "checkpoint_best.pt", "samples.png",
            "reconstructions.png", "summary.json"} <= names
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["unit"] == "nats per example"
    assert -543 < summary["test_elbo"] < 0  # better than the untrained model's 784 log(1/2)
    assert "latent_dim = 4" in (trained / "config.toml").read_text()
    assert len((trained / "metrics.csv").read_text().splitlines()) == 3


def test_evaluate_sample_and_reconstruct(trained, capsys):
    assert main(["evaluate", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "test ELBO" in out
    evaluation = json.loads((trained / "evaluation.json").read_text())
    elbo = evaluation["elbo"]
    assert evaluation["seed"] == 0  # the seed draws the reconstruction term's codes: it is recorded
    assert main(["evaluate", str(trained), "--seed", "5", "-o", str(trained.parent / "seed5.json")]) == 0
    reseeded = json.loads((trained.parent / "seed5.json").read_text())
    assert reseeded["seed"] == 5 and reseeded["elbo"] != elbo
    assert main(["evaluate", str(trained), "--k", "50", "--limit", "40"]) == 0
    loglik = json.loads((trained / "loglik.json").read_text())
    assert loglik["k"] == 50 and loglik["examples"] == 40 and 1 <= loglik["ess_min"] <= 50
    assert loglik["log_likelihood_mean"] > elbo - 5  # the IS bound is tighter than the ELBO (up to noise)
    best = json.loads((trained / "summary.json").read_text())["best_epoch"]
    assert loglik["checkpoint_epoch"] == best == json.loads((trained / "evaluation.json").read_text())["checkpoint_epoch"]
    assert main(["evaluate", str(trained), "--checkpoint", "last", "--k", "5", "--limit", "4", "-o",
                 str(trained.parent / "last.json")]) == 0
    assert json.loads((trained.parent / "last.json").read_text())["checkpoint_epoch"] == 2
    out_png = trained.parent / "s.png"
    assert main(["sample", str(trained), "-n", "16", "-o", str(out_png)]) == 0
    image = imread(out_png)
    assert image.std() > 0.05  # not blank
    assert main(["reconstruct", str(trained), "-o", str(trained.parent / "r.png")]) == 0
    assert imread(trained.parent / "r.png").std() > 0.05


def test_evaluate_refuses_one_image_whose_mean_has_no_standard_error(trained, tmp_path, capsys):
    """`evaluate RUN --k 5 --limit 1` printed "± 0.00 nats per example ... over the 1 test images"."""
    for argv in (["--limit", "1"], ["--k", "5", "--limit", "1"]):
        output = tmp_path / "one.json"
        assert main(["evaluate", str(trained), *argv, "-o", str(output)]) == 2
        err = capsys.readouterr().err
        assert "--limit 1 scores one image, and the mean of one value has no standard error" in err
        assert "give --limit 2 or more" in err and not output.exists()
    assert main(["evaluate", str(trained), "--k", "5", "--limit", "2", "-o", str(output)]) == 0
    assert json.loads(output.read_text())["log_likelihood_stderr"] > 0
    # --label-fidelity takes no --limit at all: that refusal, not one asking for --limit 2
    assert main(["evaluate", str(trained), "--label-fidelity", "--limit", "1"]) == 2
    assert "--limit has no effect here: --label-fidelity sizes its sample" in capsys.readouterr().err


def test_resume_extends_a_run(trained, capsys):
    assert main(["train", "--resume", str(trained), "--epochs", "3", "--no-progress"]) == 0
    assert len((trained / "metrics.csv").read_text().splitlines()) == 4
    # the result line says which of the epochs trained was scored, and what chose it
    best = json.loads((trained / "summary.json").read_text())["best_epoch"]
    assert f"; best epoch {best} of 3, chosen by the best validation ELBO); run directory" in capsys.readouterr().out


@pytest.mark.parametrize("with_summary", [True, False])
def test_resume_with_fewer_epochs_than_trained_is_refused_and_writes_nothing(trained, tmp_path, capsys, with_summary):
    # without its summary.json (killed before it), the resume used to rewrite config.toml with epochs = 1
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    if not with_summary:
        (run / "summary.json").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    epochs = json.loads((trained / "summary.json").read_text())["epochs"]
    assert main(["train", "--resume", str(run), "--epochs", "1", "--no-progress"]) == 2
    assert (f"--epochs 1 is fewer than the {epochs} epochs {run} has trained, and a run is not cut back; give "
            f"--epochs {epochs} or more.") in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_with_epochs_that_end_before_the_epoch_it_stopped_inside_is_refused(idx_dir, tmp_path, monkeypatch,
                                                                                    capsys):
    """A run stopped by a signal inside epoch 2, resumed with --epochs 1, trained nothing and wrote
    config.toml and summary.json as a finished 1-epoch run, while its checkpoint_last.pt (what
    `evaluate --checkpoint last` scores) held the steps of epoch 2 as well."""
    import signal

    from faults import interrupt_at_step
    from pyro_vae.inference.checkpoint import LAST, load_checkpoint

    stop_interrupting = interrupt_at_step(monkeypatch, 5)  # the second step of epoch 2 (4 steps an epoch)
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *TINY, "--train-limit", "256",
                 "--figures", "false"]) == 128 + signal.SIGINT
    stop_interrupting()
    stopped = load_checkpoint(run / LAST)
    assert stopped["epoch"] == 1 and stopped["step"] == 6 and stopped["position"] is not None
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "1", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pyro-vae: error: --epochs 1 would end {run} after epoch 1, but it stopped inside epoch 2 (2 of its 4 "
        "steps trained), and a run is not cut back; give --epochs 2 or more.")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2
    # it said "resuming RUN after epoch 1", though it went on inside epoch 2
    assert f"resuming {run} inside epoch 2, after 2 of its 4 steps" in capsys.readouterr().out


def test_a_resume_of_a_run_still_training_is_refused_and_writes_nothing(trained, tmp_path, capsys):
    # another process training in the directory holds its lock (flock conflicts across open files,
    # so this process's own descriptor stands in for that process)
    import fcntl
    import os

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    fd = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["train", "--resume", str(run), "--epochs", "9", "--no-progress"]) == 2
    finally:
        os.close(fd)
    assert (f"{run} is being trained by another process; let it finish, or stop it (Ctrl-C or kill -TERM) and then "
            f"--resume {run}.") in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    epochs = json.loads((run / "summary.json").read_text())["epochs"] + 1
    assert main(["train", "--resume", str(run), "--epochs", str(epochs), "--no-progress"]) == 0  # trains, unlocked
    assert json.loads((run / "summary.json").read_text())["epochs"] == epochs


@pytest.mark.parametrize("argv,message", [
    (["train", "--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["train", "--likelihood", "poisson"], "unknown likelihood 'poisson'"),
    (["train", "--learning-rate", "-1"], "learning_rate must be positive"),
    (["train", "--latent-dim", "x"], "--latent-dim must be a whole number"),
    (["train", "--config", "/nonexistent.toml"], "does not exist"),
    (["evaluate", "/nonexistent-run"], "does not exist"),
    (["train", "--dataset", "idx", "--data-dir", "/nonexistent-dir"], "data directory /nonexistent-dir does not exist"),
])
def test_usage_errors_exit_2_with_one_sentence(argv, message, tmp_path, capsys):
    assert main(argv + ["--run-dir", str(tmp_path / "r")] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_resume_of_a_file_says_it_is_a_file_not_a_missing_run(tmp_path, capsys):
    """`train --resume configs/x.toml` said "run directory configs/x.toml does not exist"."""
    config = tmp_path / "x.toml"
    config.write_text("[model]\nlatent_dim = 2\n")
    assert main(["train", "--resume", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config} is a file, not a run directory" in err and "--config" in err
    assert config.read_text() == "[model]\nlatent_dim = 2\n"


def test_errors_do_not_touch_an_existing_run(trained, capsys):
    before = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    assert main(["train", "--run-dir", str(trained), "--data-dir", str(trained), *TINY]) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert main(["sample", str(trained), "-o", str(trained / "checkpoint_best.pt")]) == 2
    after = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    assert before == after


def test_a_new_run_is_refused_in_a_folder_whose_files_it_would_overwrite(idx_dir, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "metrics.csv").write_text("my own numbers\n")
    (folder / "notes.txt").write_text("kept either way\n")
    assert main(["train", "--run-dir", str(folder), "--data-dir", str(idx_dir), *TINY]) == 2
    err = capsys.readouterr().err
    assert "is not a run directory but holds metrics.csv" in err and len(err.strip().splitlines()) == 1
    assert (folder / "metrics.csv").read_text() == "my own numbers\n"
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.csv", "notes.txt"]
    (folder / "metrics.csv").unlink()  # a folder of other files is the user's to share with a run
    assert main(["train", "--run-dir", str(folder), "--data-dir", str(idx_dir), *TINY]) == 0
    assert (folder / "notes.txt").read_text() == "kept either way\n"


def test_a_sigma_per_channel_on_one_channel_images_is_refused_as_the_single_learned_sigma(idx_dir, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--run-dir", str(run), "--data-dir", str(idx_dir), *TINY, "--binarize", "none",
                 "--likelihood", "gaussian-learned-per-channel"]) == 2
    err = capsys.readouterr().err
    assert "give --likelihood gaussian-learned." in err and len(err.strip().splitlines()) == 1 and not run.exists()


def test_console_script_and_debug_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pyro_vae.cli", "--debug", "evaluate", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "not a pyro-vae run directory" in result.stderr


def test_output_into_a_pipe_closed_early_ends_quietly(tmp_path):
    """`pyro-vae compare SWEEP | head -3` ended in a BrokenPipeError traceback once head had
    its lines; now the program ends as the shell's tools do: no message, exit 128 + SIGPIPE."""
    import json
    import signal

    from pyro_vae.config import Config
    from run_dirs import finished_run_dir

    runs = []
    for beta in (1.0, 2.0):
        config = Config()
        config.train.beta = beta
        run = finished_run_dir(tmp_path / f"beta={beta}", config)
        (run / "summary.json").write_text(json.dumps({"epochs": 1, "best_epoch": 1, "test_elbo": -100.0 - beta}))
        runs.append(str(run))
    process = subprocess.Popen([sys.executable, "-m", "pyro_vae.cli", "compare", *runs], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader is gone before the table is printed
    stderr = process.stderr.read()
    assert process.wait() == 128 + signal.SIGPIPE
    assert stderr == ""


def test_a_relative_data_dir_is_recorded_whole_so_the_run_is_read_from_any_folder(idx_dir, tmp_path, monkeypatch,
                                                                                 capsys):
    (tmp_path / "here").mkdir()
    shutil.copytree(idx_dir, tmp_path / "here" / "data")
    monkeypatch.chdir(tmp_path / "here")
    run = tmp_path / "run"
    assert main(["train", "--data-dir", "data", "--run-dir", str(run), *TINY, "--epochs", "1",
                 "--figures", "false"]) == 0
    assert f'data_dir = "{tmp_path / "here" / "data"}"' in (run / "config.toml").read_text()
    assert main(["train", "--resume", str(run), "--data-dir", "./data", "--epochs", "2"]) == 0  # the same folder
    monkeypatch.chdir(tmp_path)  # where no ./data is
    capsys.readouterr()
    assert main(["evaluate", str(run), "-o", str(tmp_path / "e.json")]) == 0, capsys.readouterr().err


def test_a_run_whose_data_folder_moved_names_the_run_and_its_config_not_data_dir(idx_dir, tmp_path, capsys):
    # it said "check --data-dir": evaluate has no such option, and --resume refuses to change it
    shutil.copytree(idx_dir, tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(tmp_path / "data"), "--run-dir", str(run), *TINY, "--epochs", "1",
                 "--figures", "false"]) == 0
    (tmp_path / "data").rename(tmp_path / "moved")
    capsys.readouterr()
    for argv in (["evaluate", str(run)], ["train", "--resume", str(run), "--epochs", "2"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{run} was trained on the data in {tmp_path / 'data'}, which is no longer a folder" in err, err
        assert f"write its new folder as data_dir in {run / 'config.toml'}" in err
    config = run / "config.toml"
    config.write_text(config.read_text().replace(str(tmp_path / "data"), str(tmp_path / "moved")))
    assert main(["evaluate", str(run), "-o", str(tmp_path / "e.json")]) == 0  # as it says


def test_evaluate_refuses_to_write_where_compare_reads_another_runs_results(trained, tmp_path, capsys):
    """`evaluate runs/a --k K -o runs/b/loglik.json` replaced run b's estimate (and its per-example file)
    with run a's, which compare then read as b's own log p(x)."""
    other = tmp_path / "other"
    shutil.copytree(trained, other)
    assert main(["evaluate", str(other), "--k", "5", "--limit", "10", "-o", str(other / "loglik.json")]) == 0
    kept = {name: (other / name).read_bytes() for name in ("loglik.json", "loglik_examples.npz")}
    for argv, name in ((["--k", "5", "--limit", "20"], "loglik.json"),
                       (["--limit", "20"], "label_fidelity.json")):  # an ELBO where its label fidelity is read
        assert main(["evaluate", str(trained), *argv, "-o", str(other / name)]) == 2
        assert (f"-o {other / name} is where compare reads the results of the run {other}, and these are of "
                f"{trained}: they would replace that run's and be read as its own; give -o another path."
                in capsys.readouterr().err)
    assert {name: (other / name).read_bytes() for name in kept} == kept and not (other / "label_fidelity.json").exists()
    # its own run's file may still be named, to replace an estimate on purpose
    assert main(["evaluate", str(other), "--k", "5", "--limit", "20", "-o", str(other / "loglik.json")]) == 0
    assert json.loads((other / "loglik.json").read_text())["examples"] == 20


def test_the_reconstructions_figure_names_the_images_it_shows(trained, monkeypatch):
    """reconstruct, plot --kind reconstructions and train's reconstructions.png titled the left
    panel "inputs": whether those were training images (which a model may have memorised) or
    test images was not said. It now says "the first N test images"."""
    from pyro_vae import plots
    from pyro_vae.runs import _figures, open_run

    titles, show = [], plots._show
    monkeypatch.setattr(plots, "_show", lambda ax, grid, title: titles.append(title) or show(ax, grid, title))
    assert main(["reconstruct", str(trained), "-n", "5", "-o", str(trained.parent / "r5.png")]) == 0
    assert main(["plot", str(trained), "--kind", "reconstructions", "-o", str(trained.parent / "p.png")]) == 0
    run = open_run(trained, "best")
    _figures(run.model, run.guide, run.dataset(), trained.parent / "figures", "cpu")
    assert [t for t in titles if "reconstructions" not in t and "samples" not in t] == [
        "the first 5 test images", "the first 32 test images", "the first 32 test images"]
