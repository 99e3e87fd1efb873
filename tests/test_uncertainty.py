"""Every per-epoch and summary number that is a mean over examples comes with its standard
error over them, and the training objective's value is named for what it is
(``train_objective``, with ``train_objective_name``); runs written before both (a
``train_elbo`` column, no ``*_stderr`` columns) are still read, resumed and compared."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch

from pyro_vae.build import build_vae
from pyro_vae.cli import main
from pyro_vae.config import ModelConfig
from pyro_vae.data.datasets import ImageDataset, Split
from pyro_vae.inference.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from pyro_vae.inference.objectives import elbo_terms
from pyro_vae.inference.train import evaluate_elbo

SHAPE = (1, 8, 8)
REPO = Path(__file__).resolve().parents[1]
#: metrics.csv's header as the versions before the standard errors wrote it.
OLD_HEADER = "epoch,step,train_elbo,valid_elbo,valid_reconstruction,valid_kl,kl_weight,seconds,cpu_seconds"
ERRORS = ["valid_elbo_stderr", "valid_reconstruction_stderr", "valid_kl_stderr", "train_objective_stderr"]


def _images(n: int, seed: int) -> torch.Tensor:
    return (torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def test_the_standard_errors_are_those_of_the_per_example_terms_across_batches():
    pyro.set_rng_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), SHAPE)
    x = _images(10, 1)
    torch.manual_seed(5)
    result = evaluate_elbo(model, guide, x, batch_size=4, analytic_kl=False)  # batches of 4, 4 and 2
    torch.manual_seed(5)  # the same draws, batch by batch, kept per example
    with torch.no_grad():
        parts = [elbo_terms(model, guide, x[i:i + 4], analytic_kl=False) for i in range(0, 10, 4)]
    for name in ("elbo", "reconstruction", "kl"):
        values = np.concatenate([getattr(p, name).double().numpy() for p in parts])
        assert result[name] == pytest.approx(values.mean(), rel=1e-9)
        assert result[f"{name}_stderr"] == pytest.approx(values.std(ddof=1) / math.sqrt(10), rel=1e-6)
        assert result[f"{name}_stderr"] > 0
    assert math.isnan(evaluate_elbo(model, guide, x[:1])["kl_stderr"])  # one example: no spread to measure


def _dataset() -> ImageDataset:
    return ImageDataset("tiny", Split(_images(64, 1)), Split(_images(40, 2)), Split(_images(40, 3)),
                        binarize="none")


def test_iwae_training_names_its_objective_and_appends_every_stderr_column(tmp_path):
    from pyro_vae import fit
    from pyro_vae.runs import read_metrics

    pyro.set_rng_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), SHAPE)
    lines = []
    result = fit(model, guide, _dataset(), objective="iwae", k=3, epochs=1, batch_size=32,
                 run_dir=tmp_path / "run", figures=False, log=lines.append)
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == ["epoch", "step", "train_objective", "valid_elbo", "valid_reconstruction", "valid_kl",
                      "kl_weight", "valid_iwae", "seconds", "cpu_seconds", *ERRORS[:3], "valid_iwae_stderr",
                      ERRORS[3]]
    assert result.train_objective_name == result.summary["train_objective_name"] == "IWAE bound K=3"
    assert result.summary["selection"] == "best validation IWAE bound (K=3)"  # the K of the bound that chose
    assert all(line.startswith(f"epoch {row['epoch']:>3}  train IWAE bound K=3 {row['train_objective']:9.2f}")
               for line, row in zip(lines, result.history))
    assert "train_elbo" not in result.history[0]
    assert read_metrics(tmp_path / "run") == result.history  # the file holds the history, every column
    summary = result.summary
    assert summary["test_reconstruction_stderr"] > 0 and summary["test_kl_stderr"] > 0


def test_an_unknown_standard_error_is_null_in_summary_json_which_strict_readers_accept(idx_dir, tmp_path):
    # One batch an epoch (batch 100 of 100 images): its training mean has no spread to measure.
    from pyro_vae.experiments.sweep import metric_stderr

    run = tmp_path / "run"
    assert main(["train", "--dataset", "idx", "--data-dir", str(idx_dir), "--run-dir", str(run), "--latent-dim", "2",
                 "--hidden-dims", "8", "--epochs", "1", "--batch-size", "100", "--train-limit", "100",
                 "--no-progress", "--figures", "false"]) == 0

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    summary = json.loads((run / "summary.json").read_text(), parse_constant=refuse)
    assert summary["best_epoch_metrics"]["train_objective_stderr"] is None
    assert metric_stderr(summary, "train_objective") is None


@pytest.mark.parametrize("raw,name", [
    ({"train": {"objective": "elbo"}}, "ELBO"),
    ({"train": {"objective": "elbo", "beta": 4.0}}, "ELBO with the KL weight beta=4"),
    ({"train": {"objective": "iwae", "k": 5, "kl_warmup_epochs": 10}},
     "IWAE bound K=5 with the KL weight warmed up to beta=1 over 10 epochs"),
    ({"train": {"objective": "iwae-dreg", "k": 7, "kl_warmup_steps": 300, "beta": 2.0}},
     "IWAE bound K=7 with the KL weight warmed up to beta=2 over 300 steps"),
    ({"model": {"model": "ae"}}, "reconstruction log p(x | code)"),  # no KL term
    ({"model": {"model": "m2"}, "train": {"alpha": 50.0}}, "the M2 objective (the unlabelled bound, plus the "
     "labelled bound and alpha=50 x log q(y | x) of the labelled batches)"),
])
def test_the_objectives_name_says_what_train_objective_holds(raw, name):
    from pyro_vae.config import Config
    from pyro_vae.runs import objective_name

    assert objective_name(Config.from_dict(raw)) == name


def test_the_curves_figure_names_the_training_objective(monkeypatch, tmp_path):
    from pyro_vae import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or Path(path))
    history = [{"epoch": e, "train_objective": -90.0 + e, "valid_elbo": -95.0 + e, "valid_reconstruction": -80.0,
                "valid_kl": 15.0} for e in (1, 2)]
    plots.plot_curves(history, tmp_path / "c.png", "IWAE bound K=5")
    plots.plot_curves(history, tmp_path / "c.png")
    for fig, label in zip(drawn, ("train: IWAE bound K=5", "train: the training objective")):  # short: one line
        left = fig.axes[0]
        assert [t.get_text() for t in left.get_legend().get_texts()] == [label, "validation ELBO"]
        assert left.get_title() == "Training objective and validation ELBO"


def test_committed_runs_written_before_the_rename_are_read_with_todays_names():
    from pyro_vae.runs import read_metrics

    run = REPO / "benchmarks" / "results" / "runs" / "vamp-warm-iwae-dreg"
    with open(run / "metrics.csv", newline="") as handle:
        raw = list(csv.DictReader(handle))
    assert "train_elbo" in raw[0]  # as it was committed
    rows = read_metrics(run)
    assert [r["train_objective"] for r in rows] == [float(r["train_elbo"]) for r in raw]
    assert all("train_elbo" not in r for r in rows) and list(rows[0])[2] == "train_objective"


TINY = ["--dataset", "idx", "--latent-dim", "2", "--hidden-dims", "16", "--batch-size", "100", "--no-progress",
        "--figures", "false"]


def _make_old(run: Path) -> list[str]:
    """Rewrite a run's records as a version before this change wrote them: history rows with
    ``train_elbo`` and no standard errors, in both checkpoints and metrics.csv. Returns the
    old metrics.csv's lines."""
    for name in (LAST, BEST):
        state = load_checkpoint(run / name)
        state["history"] = [{("train_elbo" if k == "train_objective" else k): v for k, v in row.items()
                             if not k.endswith("_stderr")} for row in state["history"]]
        save_checkpoint(run / name, state)
    history = load_checkpoint(run / LAST)["history"]
    lines = [OLD_HEADER] + [",".join(str(row[k]) for k in OLD_HEADER.split(",")) for row in history]
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    return lines


def test_resuming_a_run_written_before_the_standard_errors_keeps_its_rows_and_appends_the_columns(
        idx_dir, tmp_path, capsys):
    from pyro_vae.runs import read_metrics

    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--epochs", "1", *TINY]) == 0
    old = _make_old(run)
    assert main(["plot", str(run), "--kind", "curves", "-o", str(tmp_path / "old.png")]) == 0  # read as it is
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    lines = (run / "metrics.csv").read_text().splitlines()
    # The header: the old columns in their places (train_elbo under today's name), the new ones after them.
    assert lines[0] == OLD_HEADER.replace("train_elbo", "train_objective") + "," + ",".join(ERRORS)
    assert lines[1] == old[1] + ",,,,"  # epoch 1's cells as they were, no standard errors it never had
    second = dict(zip(lines[0].split(","), lines[2].split(",")))
    assert second["epoch"] == "2" and all(float(second[k]) > 0 for k in ERRORS)
    (epoch_line,) = [line for line in out.splitlines() if line.startswith("epoch   2")]
    assert f"valid ELBO {float(second['valid_elbo']):9.2f} ± {float(second['valid_elbo_stderr']):.2f}" in epoch_line
    rows = read_metrics(run)
    assert not any(k in rows[0] for k in ERRORS) and all(k in rows[1] for k in ERRORS)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_objective_name"] == "ELBO"
    assert summary["test_reconstruction_stderr"] > 0 and summary["test_kl_stderr"] > 0
    assert "train_objective" in summary["best_epoch_metrics"]
    # what reads metrics.csv reads it whole: the curves, overlaid or alone, and compare
    assert main(["plot", str(run), "--kind", "curves", "-o", str(tmp_path / "c.png")]) == 0
    twin = shutil.copytree(run, tmp_path / "twin")  # a run is overlaid on another, not on itself
    assert main(["plot", str(run), str(twin), "--kind", "curves", "-o", str(tmp_path / "o.png")]) == 0
    assert main(["compare", str(run), "-o", str(tmp_path / "cmp")]) == 0
    with open(tmp_path / "cmp.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    own = summary["best_epoch_metrics"].get("valid_elbo_stderr")  # none if the best epoch is the old one
    assert row["valid ELBO se"] == "" if own is None else float(row["valid ELBO se"]) == own
    assert main(["evaluate", str(run), "-o", str(tmp_path / "e.json")]) == 0
    evaluation = json.loads((tmp_path / "e.json").read_text())
    assert evaluation["reconstruction_stderr"] > 0 and evaluation["kl_stderr"] > 0
    assert (f"KL {evaluation['kl']:.2f} ± {evaluation['kl_stderr']:.2f}"
            in capsys.readouterr().out)
