"""The experiment layer apart from sweeps: --patience, summary.json's settings, default
run-directory names, per-example log p(x) and compare's paired difference, overlaid
curves, the beta-IWAE objective and MLflow tracking (against a stand-in client)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vae.build import build_vae
from pyro_vae.cli import main
from pyro_vae.config import Config, ModelConfig
from pyro_vae.experiments import compare
from pyro_vae.experiments.rundirs import default_run_dir
from pyro_vae.experiments.tracking import MLflowTracker, flat_params
from pyro_vae.inference.checkpoint import BEST, LAST, load_checkpoint
from pyro_vae.inference.objectives import IWAELoss, elbo_terms, scale_sites
from pyro_vae.inference.train import Trainer, epochs_since_best
from pyro_vae.runs import train_run


def tiny_config(idx_dir, **options) -> Config:
    config = Config()
    config.data.dataset, config.data.data_dir, config.data.binarize = "idx", str(idx_dir), "dynamic"
    config.data.train_limit = 600
    config.model.latent_dim, config.model.hidden_dims = 2, [16]
    config.train.epochs, config.train.batch_size, config.train.learning_rate = 2, 200, 3e-3
    for key, value in options.items():
        config.set(key, value)
    return config.validate()


def quiet(line):
    pass


# -- early stopping ----------------------------------------------------------------------

def test_epochs_since_best_counts_from_the_first_best_value():
    assert epochs_since_best([]) == 0
    assert epochs_since_best([1.0, 2.0, 3.0]) == 0
    assert epochs_since_best([1.0, 3.0, 2.0, 3.0]) == 2  # a tie is not an improvement
    assert epochs_since_best([5.0, 1.0, 2.0, 4.0]) == 3


def scripted_validation(monkeypatch, values):
    """Make the validation criterion follow ``values`` epoch by epoch (a plateau on demand)."""
    real = Trainer.validate

    def validate(self):
        metrics, _ = real(self)
        criterion = values[self.state.epoch - 1]
        metrics["valid_elbo"] = criterion
        return metrics, criterion

    monkeypatch.setattr(Trainer, "validate", validate)


def test_patience_stops_at_the_expected_epoch_and_resume_keeps_it_stopped(idx_dir, tmp_path, monkeypatch):
    # Best at epoch 3; epochs 4 and 5 do not beat it (epoch 4 only ties): with patience 2
    # training stops after epoch 5 of 10.
    scripted_validation(monkeypatch, [-300.0, -290.0, -280.0, -280.0, -285.0, -270.0, -260.0, -250.0, -240.0, -230.0])
    config = tiny_config(idx_dir, **{"train.epochs": 10, "train.patience": 2})
    summary = train_run(config, tmp_path / "run", progress=False, log=quiet)
    assert summary["epochs"] == 5 and summary["best_epoch"] == 3 and summary["stopped_early"] is True
    assert summary["patience"] == 2 and summary["max_epochs"] == 10
    assert [row["epoch"] for row in load_checkpoint(tmp_path / "run" / LAST)["history"]] == [1, 2, 3, 4, 5]
    assert load_checkpoint(tmp_path / "run" / BEST)["epoch"] == 3
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["stopped_early"] is True and saved["best_epoch"] == 3

    # The state lives in the checkpoint's history: a resumed run is still stopped ...
    again = train_run(None, tmp_path / "run", resume=True, overrides=config, progress=False, log=quiet)
    assert again["epochs"] == 5
    # ... until more patience is given (epoch 6 then improves on epoch 3 and training goes on).
    config.train.patience = 4
    more = train_run(None, tmp_path / "run", resume=True, overrides=config, progress=False, log=quiet)
    assert more["epochs"] == 10 and more["best_epoch"] == 10 and more["stopped_early"] is False


def test_resume_refuses_a_patience_that_would_have_stopped_the_run_before_the_epochs_it_trained(
        idx_dir, tmp_path, monkeypatch, capsys):
    # Best at epoch 3, then 3 epochs without a better one: patience 3 stops the run after epoch 6.
    # Patience 1 or 2 would have stopped it after epoch 4 or 5: given on resume, the run stopped at
    # once and summary.json and config.toml said patience 1 stopped a run of 6 epochs, which it did not.
    scripted_validation(monkeypatch, [-300.0, -290.0, -280.0, -285.0, -281.0, -282.0] + [-270.0] * 4)
    run = tmp_path / "run"
    assert main(["train", "--dataset", "idx", "--data-dir", str(idx_dir), "--binarize", "dynamic", "--train-limit",
                 "600", "--latent-dim", "2", "--hidden-dims", "16", "--batch-size", "200", "--epochs", "10",
                 "--patience", "3", "--figures", "false", "--no-progress", "--run-dir", str(run)]) == 0
    before = {name: (run / name).read_bytes() for name in ("summary.json", "config.toml", "metrics.csv", LAST, BEST)}
    assert json.loads(before["summary.json"])["epochs"] == 6
    capsys.readouterr()
    for patience, stop in ((1, 4), (2, 5)):
        assert main(["train", "--resume", str(run), "--patience", str(patience), "--no-progress"]) == 2
        assert capsys.readouterr().err.strip() == (
            f"pyro-vae: error: --patience {patience} would have stopped {run} after epoch {stop} (no better valid_elbo "
            f"for {patience} epochs), but it trained 6 epochs, so its record would name a patience it did not train "
            "with; give --patience 3 or more, or 0 (never stop early).")
        assert {name: (run / name).read_bytes() for name in before} == before
    # a patience that stops the run where it stopped, or later, is what it trained under: accepted
    assert main(["train", "--resume", str(run), "--patience", "4", "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 10


def test_resume_refuses_a_patience_that_would_not_have_begun_the_epoch_the_run_stopped_inside(
        idx_dir, tmp_path, monkeypatch, capsys):
    # Best at epoch 3; stopped by SIGINT inside epoch 6 (3 steps an epoch). Patience 2 would have
    # stopped the run after epoch 5, before the steps of epoch 6 its last checkpoint holds.
    import signal

    from faults import interrupt_at_step

    scripted_validation(monkeypatch, [-300.0, -290.0, -280.0, -285.0, -281.0, -270.0, -260.0, -250.0, -240.0,
                                      -230.0])
    stop_interrupting = interrupt_at_step(monkeypatch, 16)
    run = tmp_path / "run"
    assert main(["train", "--dataset", "idx", "--data-dir", str(idx_dir), "--binarize", "dynamic", "--train-limit",
                 "600", "--latent-dim", "2", "--hidden-dims", "16", "--batch-size", "200", "--epochs", "10",
                 "--figures", "false", "--no-progress", "--run-dir", str(run)]) == 128 + signal.SIGINT
    stopped = load_checkpoint(run / LAST)
    assert stopped["epoch"] == 5 and stopped["position"] is not None
    stop_interrupting()
    before = {name: (run / name).read_bytes() for name in ("config.toml", "metrics.csv", LAST, BEST)}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--patience", "2", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pyro-vae: error: --patience 2 would have stopped {run} after epoch 5 (no better valid_elbo for 2 epochs), "
        "but it trained 5 epochs and part of epoch 6, so its record would name a patience it did not train with; "
        "give --patience 3 or more, or 0 (never stop early).")
    assert {name: (run / name).read_bytes() for name in before} == before and not (run / "summary.json").exists()
    assert main(["train", "--resume", str(run), "--patience", "3", "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 10


def test_without_patience_a_plateau_runs_every_epoch(idx_dir, tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [-300.0, -300.0, -300.0, -300.0])
    summary = train_run(tiny_config(idx_dir, **{"train.epochs": 4}), tmp_path / "run", progress=False, log=quiet)
    assert summary["epochs"] == 4 and summary["best_epoch"] == 1 and summary["stopped_early"] is False


# -- summary.json and run directories ----------------------------------------------------

def test_summary_records_the_settings_needed_to_read_it_alone(idx_dir, tmp_path):
    config = tiny_config(idx_dir, **{"train.objective": "iwae", "train.k": 3, "train.beta": 0.5, "train.seed": 7})
    summary = train_run(config, tmp_path / "run", progress=False, log=quiet)
    expected = {"dataset": "idx", "model": "vae", "likelihood": "bernoulli", "binarize": "dynamic", "objective": "iwae",
                "k": 3, "beta": 0.5, "latent_dim": 2, "network": "mlp", "hidden_dims": [16], "seed": 7,
                "train_limit": 600, "selection": "best validation IWAE bound (K=3)", "patience": 0,
                "stopped_early": False}
    assert {key: summary[key] for key in expected} == expected
    assert summary["best_epoch_metrics"]["epoch"] == summary["best_epoch"]
    assert summary["best_epoch_metrics"]["valid_iwae"] == summary["best_valid_criterion"]
    plain = train_run(tiny_config(idx_dir), tmp_path / "plain", progress=False, log=quiet)
    assert plain["k"] is None and plain["selection"] == "best validation ELBO"


def test_default_run_dirs_are_new_and_named_from_the_run(tmp_path):
    config = Config().validate()
    first = default_run_dir(config, tmp_path, now=0)
    assert first.parent == tmp_path and first.name.startswith("fashion-mnist-vae-bernoulli-")
    first.mkdir()
    second = default_run_dir(config, tmp_path, now=0)  # the same second: numbered
    assert second.name == first.name + "-2" and not second.exists()


def test_two_train_commands_without_run_dir_both_run(idx_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    flags = ["train", "--dataset", "idx", "--data-dir", str(idx_dir), "--latent-dim", "2", "--hidden-dims", "16",
             "--epochs", "1", "--train-limit", "400", "--no-progress"]
    assert main(flags) == 0
    assert main([*flags, "--beta", "2"]) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(r.name.startswith("idx-vae-bernoulli-") for r in runs)
    assert sorted(json.loads((r / "summary.json").read_text())["beta"] for r in runs) == [1.0, 2.0]


# -- per-example log p(x) and paired differences ----------------------------------------

def examples(index, values, split="test"):
    return compare.Examples(np.array(index), np.array(values, dtype=float), split, 10, "idx")


def test_paired_difference_is_the_mean_and_standard_error_of_the_differences_by_hand():
    # a evaluated images 0..4, b images 2..6 (listed in another order): common 2, 3, 4.
    a = examples([0, 1, 2, 3, 4], [-100.0, -90.0, -80.0, -70.0, -60.0])
    b = examples([6, 4, 3, 2, 5], [-1.0, -57.0, -69.0, -78.0, -2.0])
    diff = compare.paired_difference(a, b)
    # d = (-78 + 80, -69 + 70, -57 + 60) = (2, 1, 3): mean 2, sd 1, se 1 / sqrt(3).
    assert diff.n == 3
    assert diff.mean == pytest.approx(2.0)
    assert diff.stderr == pytest.approx(1 / math.sqrt(3))
    # The difference of two means on these images: sd of a (-80, -70, -60) is 10, of b
    # (-78, -69, -57) is sqrt(111): se sqrt((100 + 111) / 3), far wider than the paired one.
    assert diff.unpaired_stderr == pytest.approx(math.sqrt((100 + 111) / 3))


def test_paired_difference_refuses_different_images():
    with pytest.raises(Exception, match="different images"):
        compare.paired_difference(examples([0, 1], [1.0, 2.0]), examples([0, 1], [1.0, 2.0], split="valid"))
    with pytest.raises(Exception, match="fewer than 2"):
        compare.paired_difference(examples([0, 1], [1.0, 2.0]), examples([1, 2], [1.0, 2.0]))


@pytest.fixture(scope="module")
def two_runs(idx_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    for beta in (1.0, 0.5):
        train_run(tiny_config(idx_dir, **{"train.beta": beta}), root / f"beta{beta}", progress=False, log=quiet)
    return root / "beta1.0", root / "beta0.5"


def test_evaluate_saves_per_example_values_and_compare_pairs_them(two_runs, tmp_path, capsys):
    a, b = two_runs
    assert main(["evaluate", str(a), "--k", "4", "--limit", "50", "--subset", "first"]) == 0  # images 0..49
    assert main(["evaluate", str(b), "--k", "4", "--limit", "40"]) == 0  # 40 random test images (of 200)
    for run, n in ((a, 50), (b, 40)):
        result = json.loads((run / "loglik.json").read_text())
        with np.load(run / result["per_example_file"]) as saved:
            index = saved["index"].tolist()
            assert len(index) == n and index == sorted(set(index)) and index[-1] < 200
            assert saved["log_likelihood"].mean() == pytest.approx(result["log_likelihood_mean"], abs=1e-4)
            assert str(saved["split"]) == "test" and int(saved["k"]) == 4
        if run == a:
            assert index == list(range(50))
    capsys.readouterr()
    prefix = tmp_path / "table"
    assert main(["compare", str(a), str(b), "-o", str(prefix)]) == 0
    out = capsys.readouterr().out
    with np.load(a / "loglik_examples.npz") as x, np.load(b / "loglik_examples.npz") as y:
        by_image_a = dict(zip(x["index"].tolist(), x["log_likelihood"].tolist()))
        by_image_b = dict(zip(y["index"].tolist(), y["log_likelihood"].tolist()))
    both = sorted(set(by_image_a) & set(by_image_b))  # b's images below 50
    d = np.array([by_image_b[i] - by_image_a[i] for i in both])
    assert len(both) >= 2
    with open(f"{prefix}-paired.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert int(row["images"]) == len(both)
    se = d.std(ddof=1) / math.sqrt(len(both))
    assert float(row["paired difference"]) == pytest.approx(d.mean(), rel=1e-12)
    assert float(row["paired difference se"]) == pytest.approx(se, rel=1e-12)
    assert f"{d.mean():.2f} ± {se:.2f}" in out
    with open(f"{prefix}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["beta"]) for r in rows] == [1.0, 0.5]  # the only setting that differs is shown
    assert "learning_rate" not in rows[0]
    for r, run in zip(rows, (a, b)):
        assert float(r["test ELBO"]) == json.loads((run / "summary.json").read_text())["test_elbo"]


def test_compare_keeps_a_log_p_x_of_the_validation_images_out_of_the_test_column(two_runs, tmp_path, capsys):
    """`evaluate A --split valid --k K` writes A/loglik.json: compare showed that number as A's
    "test log p(x)" (averaged over seeds with the test ones), then stopped with exit 2 after the
    table when it paired A's validation images against B's test images."""
    a, b = (shutil.copytree(run, tmp_path / run.name) for run in two_runs)
    for run, split in ((a, "valid"), (b, "test")):  # -o: the copies may hold an earlier test's loglik.json
        assert main(["evaluate", str(run), "--k", "3", "--split", split, "--limit", "30",
                     "-o", str(run / "loglik.json")]) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "table")]) == 0
    out = capsys.readouterr().out
    with open(tmp_path / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["test log p(x)"] == ""  # a's validation number is no test log p(x)
    assert float(rows[1]["test log p(x)"]) == json.loads((b / "loglik.json").read_text())["log_likelihood_mean"]
    assert f"the log p(x) of {a} (loglik.json) is of 30 of its valid images" in " ".join(out.split())
    assert "paired difference of test log p(x)" not in out
    assert main(["compare", str(a), str(b), "--reference", str(a)]) == 2
    assert "is of its valid images, and the paired difference is of test log p(x)" in capsys.readouterr().err


def test_compare_aggregates_seeds_into_mean_and_standard_error(idx_dir, tmp_path):
    runs = []
    for beta in (1.0, 2.0):
        for seed in (0, 1):
            run_dir = tmp_path / f"b{beta}s{seed}"
            train_run(tiny_config(idx_dir, **{"train.beta": beta, "train.seed": seed, "train.epochs": 1}), run_dir,
                      progress=False, log=quiet)
            runs.append(run_dir)
    columns, rows = compare.compare_table(compare.collect_runs(runs))
    assert columns[:2] == ["beta", "seeds"] and [r["seeds"] for r in rows] == [2, 2]
    values = [json.loads((r / "summary.json").read_text())["test_elbo"] for r in runs[:2]]
    assert rows[0]["test ELBO"] == pytest.approx(np.mean(values))
    assert rows[0]["test ELBO se"] == pytest.approx(np.std(values, ddof=1) / math.sqrt(2))


def test_plot_overlays_the_curves_of_several_runs_and_refuses_other_kinds(two_runs, tmp_path, capsys):
    a, b = two_runs
    output = tmp_path / "curves.png"
    assert main(["plot", str(a), str(b), "--kind", "curves", "-o", str(output)]) == 0
    assert output.stat().st_size > 0
    assert main(["plot", str(a), str(b), "--kind", "samples", "-o", str(tmp_path / "s.png")]) == 2
    assert "several are overlaid only by --kind curves" in capsys.readouterr().err
    assert main(["plot", str(a), str(tmp_path), "--kind", "curves", "-o", str(tmp_path / "c.png")]) == 2
    assert "neither a run directory nor a sweep directory" in capsys.readouterr().err


def test_several_runs_are_evaluated_but_one_output_file_for_several_is_refused(two_runs, capsys):
    a, b = two_runs
    assert main(["evaluate", str(a), str(b), "--limit", "20"]) == 0
    assert all(json.loads((r / "evaluation.json").read_text())["examples"] == 20 for r in (a, b))
    assert main(["evaluate", str(a), str(b), "-o", "x.json"]) == 2
    assert "-o names one file" in capsys.readouterr().err


def test_several_runs_are_all_checked_before_the_first_result_is_written(two_runs, tmp_path, capsys):
    """`evaluate GOOD MISSING --k 3` once replaced GOOD's loglik.json before refusing MISSING."""
    a, _ = two_runs
    before = {p.name: p.read_bytes() for p in a.iterdir() if p.is_file()}
    for argv in (["--k", "3", "--limit", "5"], ["--limit", "5"]):
        assert main(["evaluate", str(a), str(tmp_path / "missing"), *argv]) == 2
        assert "does not exist" in capsys.readouterr().err
        assert {p.name: p.read_bytes() for p in a.iterdir() if p.is_file()} == before


def test_a_later_runs_refusal_leaves_the_earlier_runs_files_as_they_were(two_runs, idx_dir, tmp_path, capsys):
    """`evaluate GAUSSIAN BERNOULLI --k 2 --density` wrote GAUSSIAN's loglik.json and then refused
    BERNOULLI (exit 2); so did a later run whose loglik.json held another request's result."""
    a, b = (Path(shutil.copytree(run, tmp_path / run.name)) for run in two_runs)
    for result in [*a.glob("loglik*"), *b.glob("loglik*")]:  # earlier tests' estimates, of other requests
        result.unlink()
    gaussian = tmp_path / "gaussian"
    train_run(tiny_config(idx_dir, **{"data.binarize": "none", "model.likelihood": "gaussian",
                                      "train.epochs": 1}), gaussian, progress=False, log=quiet)
    assert main(["evaluate", str(b), "--k", "2", "--limit", "5"]) == 0
    capsys.readouterr()
    for runs, argv, refusal in (([gaussian, a], ["--k", "2", "--limit", "5", "--density"], "--density has no effect"),
                                ([a, b], ["--k", "3", "--limit", "5"], "already holds a log p(x) estimate with K=2")):
        before = {p.name: p.read_bytes() for p in runs[0].iterdir() if p.is_file()}
        assert main(["evaluate", *map(str, runs), *argv]) == 2
        assert refusal in capsys.readouterr().err
        assert {p.name: p.read_bytes() for p in runs[0].iterdir() if p.is_file()} == before


# -- the beta-IWAE objective --------------------------------------------------------------

def test_iwae_with_k_1_is_the_beta_elbo_on_the_same_draw():
    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[8]), (1, 4, 4))
    x = torch.bernoulli(torch.rand(5, 1, 4, 4))
    beta = 0.3
    torch.manual_seed(1)
    loss = IWAELoss(k=1).differentiable_loss(scale_sites(model, ["z"], beta), scale_sites(guide, ["z"], beta), x)
    torch.manual_seed(1)
    terms = elbo_terms(model, guide, x, analytic_kl=False)  # the same z draw
    assert loss.item() == pytest.approx(-(terms.reconstruction - beta * terms.kl).sum().item(), rel=1e-5)
    torch.manual_seed(1)
    plain = IWAELoss(k=1).differentiable_loss(model, guide, x)
    assert plain.item() == pytest.approx(-terms.elbo.sum().item(), rel=1e-5)
    assert abs(loss.item() - plain.item()) > 1e-3  # beta changed the objective


# -- MLflow ------------------------------------------------------------------------------

class FakeClient:
    """Records what MLflow's client would be told."""

    def __init__(self):
        self.params, self.metrics, self.artifacts, self.status, self.tags = {}, [], [], [], {}

    def get_experiment_by_name(self, name):
        return None

    def create_experiment(self, name):
        return "7"

    def create_run(self, experiment_id, run_name=None, tags=None):
        self.run_name = run_name
        return type("Run", (), {"info": type("Info", (), {"run_id": "abc"})()})()

    def log_param(self, run_id, key, value):
        self.params[key] = value

    def log_metric(self, run_id, key, value, step=None):
        self.metrics.append((key, value, step))

    def log_artifact(self, run_id, path):
        self.artifacts.append(path)

    def set_terminated(self, run_id, status):
        self.status.append(status)

    def update_run(self, run_id, status):
        self.status.append(status)

    def get_run(self, run_id):
        return type("Run", (), {"data": type("Data", (), {"params": dict(self.params)})()})()

    def set_tag(self, run_id, key, value):
        self.tags[key] = value

    def get_metric_history(self, run_id, key):
        return [type("Metric", (), {"key": k, "value": v, "step": step})() for k, v, step in self.metrics if k == key]


def test_mlflow_tracking_logs_params_epochs_final_numbers_and_figures(idx_dir, tmp_path, monkeypatch):
    client = FakeClient()
    real_start = MLflowTracker.start
    monkeypatch.setattr(MLflowTracker, "start", classmethod(lambda cls, run_dir, config: real_start(
        run_dir, config, client=client)))
    config = tiny_config(idx_dir, **{"train.mlflow": True, "train.beta": 0.5})
    summary = train_run(config, tmp_path / "run", progress=False, log=quiet)
    assert client.params == flat_params(config) and client.params["train.beta"] == "0.5"
    assert client.params["model.hidden_dims"] == "16"
    history = load_checkpoint(tmp_path / "run" / LAST)["history"]
    logged = [(value, step) for key, value, step in client.metrics if key == "valid_elbo"]
    assert logged == [(row["valid_elbo"], row["epoch"]) for row in history]
    final = {key: value for key, value, step in client.metrics if key.startswith("final.")}
    assert final["final.test_elbo"] == summary["test_elbo"] and final["final.best_epoch"] == summary["best_epoch"]
    assert "final.beta" not in final  # settings are params, not results
    # what the final numbers are, as tags (final.test_elbo alone did not say it is a mass on binary data)
    assert {key: client.tags[key] for key in client.tags if key.startswith("final.")} == {
        "final.kind": "probability mass on binary data", "final.quantity": "log p(x)", "final.unit": "nats per example",
        "final.selection": "best validation ELBO", "final.train_objective_name": "ELBO with the KL weight beta=0.5"}
    names = sorted(p.rsplit("/", 1)[-1] for p in client.artifacts)
    assert names == ["config.toml", "curves.png", "metrics.csv", "reconstructions.png", "samples.png", "summary.json"]
    assert client.status == ["FINISHED"]
    assert json.loads((tmp_path / "run" / "mlflow.json").read_text())["run_id"] == "abc"
    # Resuming continues the same MLflow run.
    config.train.epochs = 3
    train_run(None, tmp_path / "run", resume=True, overrides=config, progress=False, log=quiet)
    assert client.status == ["FINISHED", "RUNNING", "FINISHED"]
    assert [step for key, _, step in client.metrics if key == "valid_elbo"] == [1, 2, 3]
    # MLflow params cannot change: the raised epochs are a tag of the param's name (it said 2 alone)
    assert client.params["train.epochs"] == "2" and client.tags["train.epochs"] == "3"
    assert client.tags["pyro_vae.resumed_with"] == "train.epochs: 2 -> 3"


def test_mlflow_turned_on_at_a_resume_logs_the_epochs_trained_before(idx_dir, tmp_path, monkeypatch):
    """train --resume RUN --mlflow true of a run trained without it: its new MLflow run began
    at the resumed epoch, its curves missing every epoch before, with no word."""
    client = FakeClient()
    real_start = MLflowTracker.start
    monkeypatch.setattr(MLflowTracker, "start", classmethod(lambda cls, run_dir, config: real_start(
        run_dir, config, client=client)))
    config = tiny_config(idx_dir)
    train_run(config, tmp_path / "run", progress=False, log=quiet)
    config.train.epochs, config.train.mlflow = 3, True
    train_run(None, tmp_path / "run", resume=True, overrides=config, progress=False, log=quiet)
    history = load_checkpoint(tmp_path / "run" / LAST)["history"]
    logged = [(value, step) for key, value, step in client.metrics if key == "valid_elbo"]
    assert logged == [(row["valid_elbo"], row["epoch"]) for row in history] and len(logged) == 3
    # a run that logged from its start is not logged twice on resume
    config.train.epochs = 4
    train_run(None, tmp_path / "run", resume=True, overrides=config, progress=False, log=quiet)
    assert [step for key, _, step in client.metrics if key == "valid_elbo"] == [1, 2, 3, 4]


def test_an_epoch_checkpointed_before_a_kill_stopped_its_mlflow_logging_is_logged_on_resume(idx_dir, tmp_path,
                                                                                                monkeypatch):
    """A run killed (kill -9) after epoch 2's checkpoint, before its metrics reached MLflow: the
    resumed run continued its MLflow run from epoch 3, valid_elbo missing epoch 2 that
    metrics.csv (rewritten from the checkpoint) holds."""
    client = FakeClient()
    real_start = MLflowTracker.start
    monkeypatch.setattr(MLflowTracker, "start", classmethod(lambda cls, run_dir, config: real_start(
        run_dir, config, client=client)))

    class Killed(BaseException):
        pass

    real_log = MLflowTracker.log_epoch

    def log_until_killed(self, row):
        if row["epoch"] == 2:  # epoch 2's checkpoint is written; its logging never happens
            raise Killed
        real_log(self, row)

    monkeypatch.setattr(MLflowTracker, "log_epoch", log_until_killed)
    config = tiny_config(idx_dir, **{"train.mlflow": True, "train.epochs": 3})
    with pytest.raises(Killed):
        train_run(config, tmp_path / "run", progress=False, log=quiet)
    monkeypatch.setattr(MLflowTracker, "log_epoch", real_log)
    train_run(None, tmp_path / "run", resume=True, overrides=config, progress=False, log=quiet)
    history = load_checkpoint(tmp_path / "run" / LAST)["history"]
    logged = sorted((step, value) for key, value, step in client.metrics if key == "valid_elbo")
    assert logged == [(row["epoch"], row["valid_elbo"]) for row in history] and len(logged) == 3


def test_a_run_resumed_from_another_directory_continues_its_mlflow_run_in_the_store_it_began_in(
        idx_dir, tmp_path, monkeypatch):
    """The store is ./mlflow.db of the working directory: `train --resume RUN` from another
    directory opened another store, which lacks the run's MLflow run, and stopped with "MLflow
    cannot use its store" (leaving an empty mlflow.db there)."""
    import sys
    import types

    client, opened = FakeClient(), []

    def open_client(tracking_uri):
        opened.append(tracking_uri)
        return client

    monkeypatch.setitem(sys.modules, "mlflow", types.ModuleType("mlflow"))
    monkeypatch.setitem(sys.modules, "mlflow.tracking", types.SimpleNamespace(MlflowClient=open_client))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "a")
    config = tiny_config(idx_dir, **{"train.mlflow": True, "train.figures": False})
    train_run(config, tmp_path / "run", progress=False, log=quiet)
    monkeypatch.chdir(tmp_path / "b")
    config.train.epochs = 3
    train_run(None, tmp_path / "run", resume=True, overrides=config, progress=False, log=quiet)
    assert opened == [f"sqlite:///{(tmp_path / 'a' / 'mlflow.db').resolve()}"] * 2
    assert client.status == ["FINISHED", "RUNNING", "FINISHED"]


@pytest.mark.parametrize("where", ["setup", "after training"])
def test_a_run_that_fails_after_mlflow_started_ends_its_mlflow_run_failed(idx_dir, tmp_path, monkeypatch, where):
    """An exception after the MLflow run began, before training (building the trainer) or after
    it (scoring the test split), ends that run FAILED instead of leaving it RUNNING forever."""
    import pyro_vae.runs as runs

    client = FakeClient()
    real_start = MLflowTracker.start
    monkeypatch.setattr(MLflowTracker, "start", classmethod(lambda cls, run_dir, config: real_start(
        run_dir, config, client=client)))

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runs, "Trainer" if where == "setup" else "evaluate_elbo", broken)
    config = tiny_config(idx_dir, **{"train.mlflow": True, "train.epochs": 1})
    with pytest.raises(RuntimeError, match="disk on fire"):
        train_run(config, tmp_path / "run", progress=False, log=quiet)
    assert client.status == ["FAILED"]


def test_mlflow_missing_is_one_sentence_naming_the_extra(monkeypatch):
    import sys

    from pyro_vae.errors import ConfigError
    from pyro_vae.experiments.tracking import mlflow_client

    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(ConfigError, match=r"pip install 'pyro-vae\[mlflow\]'"):
        mlflow_client()


def test_a_resume_of_a_run_logging_to_mlflow_without_it_names_the_runs_setting(idx_dir, tmp_path, monkeypatch,
                                                                               capsys):
    """`train --resume RUN` of a run begun with --mlflow true, MLflow since gone: the error said
    "--mlflow true needs MLflow", a flag its user had not given, and not how to go on without it."""
    import sys

    run = tmp_path / "run"
    train_run(tiny_config(idx_dir, **{"train.epochs": 1}), run, progress=False, log=quiet)
    (run / "config.toml").write_text((run / "config.toml").read_text().replace("mlflow = false", "mlflow = true"))
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert capsys.readouterr().err == (
        f"pyro-vae: error: {run} logs to MLflow (mlflow = true in its config.toml), but MLflow is not installed: pip "
        "install 'pyro-vae[mlflow]' (or mlflow-skinny), or resume it with --mlflow false.\n")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_missing_mlflow_is_refused_before_tensorboard_writes_anything(idx_dir, tmp_path, monkeypatch, capsys):
    """--tensorboard true --mlflow true without MLflow: one sentence, exit 2, and no run
    directory (TensorBoard's writer used to make RUN/tensorboard and an event file first)."""
    import sys

    from pyro_vae.cli import main

    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    run_dir = tmp_path / "run"
    assert main(["train", "--dataset", "idx", "--data-dir", str(idx_dir), "--latent-dim", "2", "--hidden-dims", "16",
                 "--epochs", "1", "--tensorboard", "true", "--mlflow", "true", "--run-dir", str(run_dir),
                 "--no-progress"]) == 2
    assert "pip install 'pyro-vae[mlflow]'" in capsys.readouterr().err
    assert not run_dir.exists()


def test_a_sweep_asking_for_mlflow_without_it_is_refused_before_its_directory_is_made(idx_dir, tmp_path, monkeypatch,
                                                                                       capsys):
    """It wrote sweep.json and study.db, every trial then failed on the missing MLflow, and the
    sweep could not be rerun without --mlflow (another base) until the directory was deleted."""
    import sys

    from pyro_vae.cli import main

    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "--sweep-dir", str(sweep_dir), "--grid", "latent_dim=2,3", "--dataset", "idx", "--data-dir",
                 str(idx_dir), "--hidden-dims", "16", "--epochs", "1", "--mlflow", "true", "--figures", "false"]) == 2
    assert "pip install 'pyro-vae[mlflow]'" in capsys.readouterr().err
    assert not sweep_dir.exists()
