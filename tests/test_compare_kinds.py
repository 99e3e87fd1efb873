"""compare and the kinds of log-likelihood (issue 18): binarized and 8-bit data are
different data sets, so compare says so, marks the rows and takes no paired difference
between them; runs of one kind are still paired. Run directories are written by hand, as
compare reads them (config.toml, a last checkpoint, metrics.csv, summary.json, loglik.json
and its per-example values)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from pyro_vae.cli import main
from pyro_vae.config import Config
from pyro_vae.experiments import compare
from pyro_vae.inference.kinds import BINARY_MASS, DENSITY, DEQUANTIZED_BOUND, EIGHT_BIT_MASS, comparable
from run_dirs import finished_run_dir

DIMS = 784
DIFFERENT_DATA = comparable(BINARY_MASS, EIGHT_BIT_MASS).reason  # the sentence compare must print


def fake_run(root, name, likelihood, binarize, kind, values, test_elbo=-100.0, kinds_recorded=True, beta=1.0):
    """A finished, evaluated run: per-example log p(x) ``values`` on test images 0..n-1."""
    config = Config()
    config.model.likelihood, config.data.binarize, config.train.beta = likelihood, binarize, beta
    run = finished_run_dir(root / name, config)
    mean = float(np.mean(values))
    fields = ({"likelihood": likelihood, "binarize": binarize, "kind": kind, "dimensions": DIMS}
              if kinds_recorded else {})
    summary = {"epochs": 1, "best_epoch": 1, "test_elbo": test_elbo, **fields}
    loglik = {"log_likelihood_mean": mean, "per_example_file": "loglik_examples.npz", **fields}
    if kinds_recorded:
        summary["bits_per_dim"] = -test_elbo / (DIMS * math.log(2))
        loglik["bits_per_dim"] = -mean / (DIMS * math.log(2))
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "loglik.json").write_text(json.dumps(loglik))
    compare.save_examples(run / "loglik.json", values, np.arange(len(values)), "test", 10, "fashion-mnist")
    return run


def test_binarized_and_8_bit_runs_are_not_ranked_nor_paired(tmp_path, capsys):
    a = fake_run(tmp_path, "bern", "bernoulli", "static", BINARY_MASS, [-90.0, -80.0, -70.0])
    b = fake_run(tmp_path, "logistic", "discretized-logistic", "none", EIGHT_BIT_MASS, [-2000.0, -1900.0, -1950.0])
    prefix = tmp_path / "table"
    assert main(["compare", str(a), str(b), "-o", str(prefix)]) == 0
    out = capsys.readouterr().out
    # The reason once, in a note naming the two rows on different data, for log p(x) and
    # for the test ELBO (both runs' ELBOs carry the same kinds).
    assert out.count(DIFFERENT_DATA) == 2
    assert ("Note: test log p(x) is not comparable between row 1 (binarize=static, likelihood=bernoulli) and "
            f"row 2 (binarize=none, likelihood=discretized-logistic): {DIFFERENT_DATA}.") in out
    assert "no paired difference of" in out and "paired difference of test log p(x) against" not in out
    assert not (tmp_path / "table-paired.csv").exists()
    assert DIFFERENT_DATA in (tmp_path / "table.md").read_text()
    with open(f"{prefix}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["test log p(x) kind"] for r in rows] == [BINARY_MASS, EIGHT_BIT_MASS]
    # bits/dim = -nats / (784 ln 2), by hand: -80 -> 0.147210..., -1950 -> 3.588252...
    assert float(rows[0]["test log p(x) bits/dim"]) == pytest.approx(80 / (784 * math.log(2)), rel=1e-12)
    assert float(rows[1]["test log p(x) bits/dim"]) == pytest.approx(1950 / (784 * math.log(2)), rel=1e-12)
    assert float(rows[0]["test ELBO bits/dim"]) == pytest.approx(100 / (784 * math.log(2)), rel=1e-12)
    assert rows[0]["test ELBO kind"] == BINARY_MASS
    # the library refuses the pair too, with the sentence
    records = compare.collect_runs([a, b])
    paired, refused = compare.paired_table(records, records[0])
    assert paired == [] and [(r.run_dir, reason) for r, reason in refused] == [(b, DIFFERENT_DATA)]


def test_a_rows_density_elbo_above_its_dequantized_log_likelihood_is_noted(tmp_path, capsys):
    """A Gaussian run's row showed test ELBO -1885.86 (a density, as trained) beside test log p(x) -6502.76
    (evaluate --k: a dequantized bound on the 8-bit mass), an ELBO above the log p(x) with no word said."""
    gaussian = fake_run(tmp_path, "gaussian", "gaussian", "none", DEQUANTIZED_BOUND, [-6500.0, -6400.0],
                        test_elbo=-1885.86)
    summary = json.loads((gaussian / "summary.json").read_text())
    (gaussian / "summary.json").write_text(json.dumps({**summary, "kind": DENSITY}))
    logistic = fake_run(tmp_path, "logistic", "discretized-logistic", "none", EIGHT_BIT_MASS, [-2600.0, -2500.0],
                        test_elbo=-2621.43)
    assert main(["compare", str(gaussian), str(logistic)]) == 0
    out = capsys.readouterr().out
    assert (f"Note: the test ELBO and the test log p(x) of row 1 (likelihood=gaussian) are not comparable with each "
            f"other: {comparable(DENSITY, DEQUANTIZED_BOUND).reason}; that ELBO bounds a number of its own kind, not "
            "that log p(x), and may lie above it.") in out
    assert "of row 2" not in out  # the discretized run's ELBO and log p(x) are both masses of the 8-bit images
    assert "paired difference of test log p(x) against" in out  # both log p(x) are on the 8-bit scale


def test_runs_of_one_kind_are_still_paired(tmp_path, capsys):
    a = fake_run(tmp_path, "a", "bernoulli", "static", BINARY_MASS, [-80.0, -70.0, -60.0])
    b = fake_run(tmp_path, "b", "bernoulli", "static", BINARY_MASS, [-78.0, -69.0, -57.0], beta=2.0)
    prefix = tmp_path / "table"
    assert main(["compare", str(a), str(b), "-o", str(prefix)]) == 0
    out = capsys.readouterr().out
    assert "Note:" not in out and "no paired difference" not in out
    with open(f"{prefix}-paired.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    # d = (2, 1, 3): mean 2, standard error 1 / sqrt(3)
    assert float(row["paired difference"]) == pytest.approx(2.0)
    assert float(row["paired difference se"]) == pytest.approx(1 / math.sqrt(3))


def test_runs_scored_on_other_binarization_draws_of_the_test_images_are_not_paired(tmp_path, capsys):
    """A static binarization draws the test images with the run's seed (a dynamic one once, with a
    fixed seed): compare paired image i of a seed-0 run with image i of a seed-1 run, or of a dynamic
    run, 2,000 other 0/1 images in 1,999 of 2,000 on mnist-t10k, and called it a paired difference
    on the images both evaluated. Their means are still set side by side (one distribution's draws)."""
    a = fake_run(tmp_path, "a", "bernoulli", "static", BINARY_MASS, [-80.0, -70.0, -60.0])
    b = fake_run(tmp_path, "b", "bernoulli", "static", BINARY_MASS, [-78.0, -69.0, -57.0])
    config = Config()
    config.model.likelihood, config.data.binarize, config.train.seed = "bernoulli", "static", 1
    (b / "config.toml").write_text(config.validate().dumps())
    c = fake_run(tmp_path, "c", "bernoulli", "dynamic", BINARY_MASS, [-79.0, -68.0, -58.0])
    assert main(["compare", str(a), str(b), str(c), "--reference", str(a), "-o", str(tmp_path / "table")]) == 0
    out = capsys.readouterr().out
    assert (f"no paired difference of {b} against {a}: its test images are binarized static with seed 1 and the "
            "reference's static with seed 0, so image i is not the same 0/1 image in both and the differences are "
            "not paired; compare runs of one binarization draw.") in out
    assert f"no paired difference of {c} against {a}: its test images are binarized dynamic and the reference's " \
           "static with seed 0" in out
    assert "paired difference of test log p(x) against" not in out and not (tmp_path / "table-paired.csv").exists()
    assert "Note: test" not in out  # the means rank: draws of the same Bernoulli(pixel) images


def test_thresholded_runs_beside_drawn_ones_are_noted_and_not_paired(tmp_path, capsys):
    """A grid over binarize=dynamic,threshold: both numbers are masses on binary data, so compare
    ranked them with no note and paired them, though the thresholded images are other, far more
    predictable 0/1 data; the table, the paired differences and the sweep figure now say so."""
    a = fake_run(tmp_path, "a", "bernoulli", "dynamic", BINARY_MASS, [-80.0, -70.0, -60.0])
    b = fake_run(tmp_path, "b", "bernoulli", "threshold", BINARY_MASS, [-60.0, -50.0, -40.0])
    c = fake_run(tmp_path, "c", "bernoulli", "static", BINARY_MASS, [-79.0, -69.0, -61.0])
    assert main(["compare", str(a), str(b), str(c), "--reference", str(a)]) == 0
    out = capsys.readouterr().out
    reason = ("one is scored on images thresholded at 0.5 (binarize threshold) and the other on images drawn as "
              "Bernoulli(pixel) (binarize dynamic or static): different binary data, the thresholded far more "
              "predictable, so the numbers cannot be ranked")
    assert (f"Note: test log p(x) is not comparable between row 1 (binarize=dynamic) and row 2 (binarize=threshold); "
            f"row 2 (binarize=threshold) and row 3 (binarize=static): {reason}. No paired difference is taken "
            "between them.") in out
    assert "Note: test ELBO (and valid ELBO, of the same kind) is not comparable between row 1" in out
    assert f"no paired difference of {b} against {a}: their test log p(x) cannot be ranked" in out
    assert "row 1 (binarize=dynamic) and row 3" not in out  # draws of the same Bernoulli images rank
    keys, groups = compare.group_runs(compare.collect_runs([a, b]))  # the sweep figure's and curves' note
    assert compare._incomparable_note(groups, keys, "test_elbo") == (
        f"Not comparable: test_elbo of binarize=dynamic and binarize=threshold: {reason}.")


def test_runs_that_predate_kinds_are_unknown_not_guessed(tmp_path, capsys):
    a = fake_run(tmp_path, "old", "bernoulli", "static", None, [-80.0, -70.0, -60.0], kinds_recorded=False)
    b = fake_run(tmp_path, "new", "bernoulli", "dynamic", BINARY_MASS, [-78.0, -69.0, -57.0])
    prefix = tmp_path / "table"
    assert main(["compare", str(a), str(b), "-o", str(prefix)]) == 0
    out = capsys.readouterr().out
    assert "the kind of number of one of them is unknown" in out
    assert not (tmp_path / "table-paired.csv").exists()
    with open(f"{prefix}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["test log p(x) kind"] for r in rows] == [compare.UNKNOWN_KIND, BINARY_MASS]
    assert rows[0]["test log p(x) bits/dim"] == ""  # not recorded, not computed from a guessed D


def test_one_runs_label_fidelity_shows_its_binomial_standard_errors(tmp_path):
    """A row of one run shows the run's own standard error of every measured share: the
    label fidelities and the z probe's accuracy from label_fidelity.json (binomial)."""
    fidelity = {"prior": {"fidelity": 0.9, "stderr": 0.03, "images": 100},
                "style_grid": {"fidelity": 0.8, "stderr": 0.04, "images": 100},
                "z_probe_accuracy": 0.5, "z_probe_accuracy_stderr": 0.05}
    record = compare.RunRecord(tmp_path, {"beta": 1.0, "seed": 0}, {"test_elbo": -90.0, "test_elbo_stderr": 0.5},
                               fidelity=fidelity)
    columns, (row,) = compare.compare_table([record])
    assert (row["label fidelity (prior) se"], row["label fidelity (style grid) se"], row["z probe accuracy se"]) == (
        0.03, 0.04, 0.05)
    assert "0.9000 ± 0.0300" in compare.to_markdown(columns, [row])


def test_a_label_fidelity_of_the_validation_images_is_not_shown_as_the_test_images(tmp_path):
    """evaluate --label-fidelity --split valid (to choose a setting without the test set) writes
    label_fidelity.json, and compare set its style grid and z probe, of validation images, in the
    same columns as the other seeds' test numbers and averaged them together, with no word.
    Those two columns now hold test numbers alone, with a note; the prior samples read no split."""
    def record(seed, split, grid):
        style = {"fidelity": grid, "stderr": 0.01, "images": 1000, **({"split": split} if split else {})}
        fidelity = {"prior": {"fidelity": 0.9, "stderr": 0.03, "images": 1000}, "style_grid": style,
                    "z_probe_accuracy": grid - 0.3, "z_probe_accuracy_stderr": 0.01}
        return compare.RunRecord(tmp_path / f"seed={seed}", {"beta": 4.0, "seed": seed},
                                 {"test_elbo": -90.0, "test_elbo_stderr": 0.5}, fidelity=fidelity)

    records = [record(0, "test", 0.90), record(1, None, 0.80), record(2, "valid", 0.50)]  # None: before --split
    columns, (row,) = compare.compare_table(records)
    # a mean over seeds 0 and 1 would pass for one over the row's three: left blank, as a missing number is
    # (it was the mean of all three, 0.7333, the validation images' 0.5 among them)
    assert row["label fidelity (style grid)"] is None and row["z probe accuracy"] is None
    assert row["label fidelity (prior)"] == pytest.approx(0.9)
    _, (row,) = compare.compare_table(records[:2])
    assert row["label fidelity (style grid)"] == pytest.approx(0.85)
    notes = compare.kind_notes(records)
    assert [n for n in notes if "label_fidelity.json" in n] == [
        f"Note: the style grid and z probe of {tmp_path / 'seed=2'} (label_fidelity.json) are of its valid images, "
        "not the test images those columns hold, so they are left out (its prior samples' fidelity, which reads no "
        f"images, is shown); measure the test images with `pyro-vae evaluate {tmp_path / 'seed=2'} --label-fidelity "
        f"-o {tmp_path / 'seed=2' / 'label_fidelity.json'}`."]


def test_a_failed_comparison_figure_leaves_the_old_one_whole(tmp_path, monkeypatch):
    """plot --kind curves (several runs), --kind sweep and compare --figure write as every
    figure does: a write that fails midway leaves the previous file as it was, in one sentence."""
    from matplotlib.figure import Figure

    from pyro_vae.errors import WriteError

    history = [{"epoch": 1, "valid_elbo": -100.0}, {"epoch": 2, "valid_elbo": -95.0}]
    records = [compare.RunRecord(tmp_path / f"r{beta}", {"beta": beta, "seed": 0}, {"best_epoch": 2},
                                 history=history) for beta in (1.0, 2.0)]
    output = tmp_path / "curves.png"
    output.write_bytes(b"the old figure")

    def full_disk(self, fname, **kwargs):
        with open(fname, "wb") as handle:
            handle.write(b"half a fig")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    with pytest.raises(WriteError, match=r"no space left on the device .*the previous curves\.png is intact"):
        compare.plot_overlaid_curves(records, output)
    assert output.read_bytes() == b"the old figure" and sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]


def test_a_truncated_per_example_file_is_one_sentence(tmp_path):
    """loglik_examples.npz cut short (a full disk, a copy stopped midway) is a zip archive
    without its directory: refused naming the file and the fix, not a BadZipFile traceback."""
    from pyro_vae.errors import PyroVAEError

    path = tmp_path / "loglik_examples.npz"
    np.savez(path, index=np.arange(5), log_likelihood=np.zeros(5), split="test", k=3, dataset="idx")
    whole = path.read_bytes()
    for cut in (len(whole) // 2, len(whole) - 10):
        path.write_bytes(whole[:cut])
        with pytest.raises(PyroVAEError, match="cannot read per-example values from .*; rerun evaluate --k"):
            compare.Examples.load(path)


def test_curves_of_an_accuracy_run_and_an_elbo_run_are_refused_not_a_traceback(tmp_path):
    """plot RUN_VAE RUN_M2 --kind curves: M2's validation curve is an accuracy, a VAE's an
    ELBO; one axis cannot hold both (it was a KeyError traceback)."""
    from pyro_vae.errors import PyroVAEError

    vae = compare.RunRecord(tmp_path / "vae", {"model": "vae"}, {}, history=[{"epoch": 1, "valid_elbo": -90.0}])
    m2 = compare.RunRecord(tmp_path / "m2", {"model": "m2"}, {}, history=[{"epoch": 1, "valid_accuracy": 0.5}])
    with pytest.raises(PyroVAEError, match="m2's validation curve is its validation accuracy, which cannot share"):
        compare.plot_overlaid_curves([vae, m2], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def _label_runs(root) -> list[str]:
    """An M2 and an ADGM run (aux_dim 8) written by hand, each with its accuracy and baseline's."""
    runs = []
    for model, aux_dim in (("m2", 100), ("adgm", 8)):
        config = Config()
        config.model.model, config.model.aux_dim, config.data.labels = model, aux_dim, 100
        run = finished_run_dir(root / model, config)
        (run / "summary.json").write_text(json.dumps({"epochs": 1, "best_epoch": 1, "test_accuracy": 0.9,
                                                      "test_accuracy_stderr": 0.01, "baseline_test_accuracy": 0.8,
                                                      "baseline_test_accuracy_stderr": 0.012}))
        runs.append(str(run))
    return runs


def _compared(root, runs) -> list[dict]:
    assert main(["compare", *runs, "-o", str(root / "table")]) == 0
    with open(root / "table.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_setting_a_run_does_not_use_is_a_blank_cell_not_its_default(tmp_path, capsys):
    """compare of an M2 and an ADGM run showed aux_dim 100 for M2, which has no auxiliary
    variable (the default recorded in its config.toml); the ADGM's own value stays."""
    rows = _compared(tmp_path, _label_runs(tmp_path))
    assert [(row["model"], row["aux_dim"]) for row in rows] == [("m2", ""), ("adgm", "8")]
    assert "| m2 |  |" in capsys.readouterr().out  # the printed table too


def test_binarized_mnist_has_a_blank_binarize_cell_not_none(tmp_path):
    """binarized-mnist beside a dynamically binarized Fashion-MNIST run showed binarize "auto"
    (its recorded default) as if its pixels were grey levels taken as they are: its 0/1
    pixels are a fixed draw that no --binarize changes."""
    runs = []
    for dataset, binarize in (("binarized-mnist", "auto"), ("fashion-mnist", "dynamic")):
        config = Config()
        config.data.dataset, config.data.binarize = dataset, binarize
        run = finished_run_dir(tmp_path / dataset, config)
        (run / "summary.json").write_text(json.dumps({"epochs": 1, "best_epoch": 1, "test_elbo": -100.0,
                                                      "likelihood": "bernoulli", "kind": BINARY_MASS}))
        runs.append(str(run))
    rows = _compared(tmp_path, runs)
    assert [(row["dataset"], row["binarize"]) for row in rows] == [("binarized-mnist", ""),
                                                                   ("fashion-mnist", "dynamic")]


def test_the_overlaid_curves_name_a_run_by_the_settings_it_uses(tmp_path, monkeypatch):
    """The legend of an M2 run beside an ADGM's said aux_dim=100, a setting M2 has not."""
    runs = _label_runs(tmp_path)
    for run in runs:
        (tmp_path / run / "metrics.csv").write_text("epoch,valid_accuracy\n1,0.5\n")
    drawn = []
    monkeypatch.setattr(compare, "_save", lambda fig, output: drawn.append(fig) or output)
    compare.plot_overlaid_curves(compare.collect_runs(runs), tmp_path / "curves.png")
    (fig,) = drawn
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["model=m2", "model=adgm, aux_dim=8"]


def test_the_overlaid_curves_of_one_epoch_tell_the_runs_apart_at_a_whole_epoch(tmp_path, monkeypatch):
    """Two one-epoch runs: each point lay under a black star (the best epoch), so no run's colour
    showed, and the epoch axis was ticked at 0.945, 0.96, ... and not at 1."""
    runs = _label_runs(tmp_path)
    for run, accuracy in zip(runs, (0.5, 0.6)):
        (tmp_path / run / "metrics.csv").write_text(f"epoch,valid_accuracy\n1,{accuracy}\n")
    drawn = []
    monkeypatch.setattr(compare, "_save", lambda fig, output: drawn.append(fig) or output)
    compare.plot_overlaid_curves(compare.collect_runs(runs), tmp_path / "curves.png")
    (fig,) = drawn
    ax = fig.axes[0]
    curves, stars = ax.lines[0::2], ax.lines[1::2]
    assert [star.get_marker() for star in stars] == ["*", "*"]
    assert [star.get_color() for star in stars] == [curve.get_color() for curve in curves]
    low, high = ax.get_xlim()
    assert [t for t in ax.get_xticks() if low <= t <= high] == [1.0]


def test_the_label_runs_baseline_accuracy_is_a_column_beside_theirs(tmp_path, capsys):
    """The table gave a label run's test accuracy without the supervised-only baseline it is
    measured against; both come with their binomial standard errors."""
    rows = _compared(tmp_path, _label_runs(tmp_path))
    assert [(row["baseline test accuracy"], row["baseline test accuracy se"]) for row in rows] == [("0.8", "0.012")] * 2
    assert "| 0.9000 ± 0.0100 | 0.8000 ± 0.0120 |" in capsys.readouterr().out


# -- conditional log-likelihoods: log p(x | y) and log p(x_m | x_g) are not log p(x) --------

def conditional_run(root, name, model, values, quantity=None, dims=DIMS, given_quadrants=1):
    """A finished, evaluated run of ``model`` whose JSONs record the ``quantity`` it scores
    (none recorded when None: a run evaluated before the field)."""
    run = fake_run(root, name, "bernoulli", "static", BINARY_MASS, values)
    config = Config()
    config.model.likelihood, config.data.binarize, config.model.model = "bernoulli", "static", model
    if model == "quadrant":
        config.model.given_quadrants = given_quadrants
    (run / "config.toml").write_text(config.validate().dumps())
    for file in ("summary.json", "loglik.json"):
        fields = json.loads((run / file).read_text())
        fields["dimensions"] = dims
        if quantity is not None:
            fields["quantity"] = quantity
        (run / file).write_text(json.dumps(fields))
    return run


def test_conditional_log_likelihoods_are_named_and_not_paired_with_log_p_x(tmp_path, capsys):
    from pyro_vae.inference.kinds import GIVEN_LABEL, MARGINAL, quantity

    completion = quantity("quadrant", 1)
    assert completion == "log p(x_m | x_g), x_g the top-left quadrant"
    vae = conditional_run(tmp_path, "vae", "vae", [-80.0, -70.0, -60.0], MARGINAL)
    cvae = conditional_run(tmp_path, "cvae", "cvae", [-79.0, -70.0, -58.0], GIVEN_LABEL)
    quad = conditional_run(tmp_path, "quad", "quadrant", [-50.0, -40.0, -45.0], completion, dims=588)
    prefix = tmp_path / "table"
    assert main(["compare", str(vae), str(cvae), str(quad), "--reference", str(vae), "-o", str(prefix)]) == 0
    out = capsys.readouterr().out
    assert "paired difference of test log p(x) against" not in out and not (tmp_path / "table-paired.csv").exists()
    for run in (cvae, quad):
        assert f"no paired difference of {run} against {vae}" in out
    assert (f"Note: test log p(x) is not comparable between row 1 (model=vae) and row 2 (model=cvae): one is "
            f"log p(x), the other log p(x | y): different quantities") in out
    with open(f"{prefix}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["test log p(x) kind"] for r in rows] == [
        BINARY_MASS, f"log p(x | y): {BINARY_MASS}", f"{completion}: {BINARY_MASS}"]
    assert [r["test ELBO kind"] for r in rows][1] == f"log p(x | y): {BINARY_MASS}"
    # the Markdown table escapes the bar of "x | y", lest it split the cell
    markdown = (tmp_path / "table.md").read_text()
    assert "log p(x \\| y): probability mass" in markdown
    assert {line.count(" | ") for line in markdown.splitlines() if line.startswith("| ")} == {
        markdown.splitlines()[0].count(" | ")}
    # the library refuses the pairs too, and still pairs the same quantity
    records = compare.collect_runs([vae, cvae, quad])
    paired, refused = compare.paired_table(records, records[0])
    assert paired == [] and [r.run_dir for r, _ in refused] == [cvae, quad]
    other = conditional_run(tmp_path, "cvae2", "cvae", [-78.0, -69.0, -57.0], GIVEN_LABEL)
    records = compare.collect_runs([cvae, other])
    paired, refused = compare.paired_table(records, records[0])
    assert refused == [] and [row["paired difference"] for row in paired] == [pytest.approx(1.0)]


def test_a_quantity_not_recorded_is_read_from_the_runs_model_not_taken_for_log_p_x(tmp_path):
    """loglik.json and summary.json written before the "quantity" field: the run's recorded
    model says what they are (a CVAE's is log p(x | y)), so they are still not paired."""
    vae = conditional_run(tmp_path, "vae", "vae", [-80.0, -70.0, -60.0])
    cvae = conditional_run(tmp_path, "cvae", "cvae", [-79.0, -70.0, -58.0])
    two = conditional_run(tmp_path, "two", "quadrant", [-30.0, -20.0, -25.0], given_quadrants=2)
    records = compare.collect_runs([vae, cvae, two])
    assert [compare.quantity_of(r, "test log p(x)") for r in records] == [
        "log p(x)", "log p(x | y)", "log p(x_m | x_g), x_g the top-left and top-right quadrants"]
    paired, refused = compare.paired_table(records, records[0])
    assert paired == [] and len(refused) == 2


def test_quantities_are_compared_before_kinds():
    from pyro_vae.inference import kinds

    verdict = kinds.comparable(BINARY_MASS, BINARY_MASS, kinds.MARGINAL, kinds.GIVEN_LABEL)
    assert not verdict.ok and "one is log p(x), the other log p(x | y)" in verdict.reason
    assert not kinds.comparable(BINARY_MASS, BINARY_MASS, kinds.quantity("quadrant", 1),
                                kinds.quantity("quadrant", 2)).ok
    assert kinds.comparable(BINARY_MASS, BINARY_MASS, kinds.GIVEN_LABEL, kinds.GIVEN_LABEL).ok
    # an unknown kind of a different quantity: the quantity is the reason
    verdict = compare.pair_verdict(compare.UNKNOWN_KIND, BINARY_MASS, kinds.MARGINAL, kinds.GIVEN_LABEL)
    assert not verdict.ok and "different quantities" in verdict.reason


def test_quadrant_completion_scores_its_missing_pixels_alone():
    """kind_fields for --model quadrant: the quantity names the given quadrant, and the
    bits/dim are over the 588 missing pixel values of a 28 x 28 image, not all 784."""
    from pyro_vae.likelihoods import LIKELIHOODS
    from pyro_vae.models.quadrant import QUADRANT_ORDER
    from pyro_vae.inference import kinds
    from pyro_vae.runs import kind_fields

    assert kinds.QUADRANT_ORDER == QUADRANT_ORDER
    config = Config()
    config.model.model, config.data.binarize = "quadrant", "static"
    likelihood = LIKELIHOODS["bernoulli"]
    fields = kind_fields(config, likelihood, (1, 28, 28), -400.0, 2.0)
    assert (fields["quantity"], fields["dimensions"], fields["image_dimensions"]) == (
        "log p(x_m | x_g), x_g the top-left quadrant", 588, 784)
    assert fields["bits_per_dim"] == pytest.approx(400 / (588 * math.log(2)), rel=1e-12)
    assert fields["bits_per_dim_stderr"] == pytest.approx(2 / (588 * math.log(2)), rel=1e-12)
    config.model.given_quadrants = 3
    assert kind_fields(config, likelihood, (1, 28, 28), -100.0)["dimensions"] == 196
    config.model.model = "cvae"
    fields = kind_fields(config, likelihood, (1, 28, 28), -400.0)
    assert (fields["quantity"], fields["dimensions"], "image_dimensions" in fields) == ("log p(x | y)", 784, False)


# -- a plain autoencoder's reconstruction term is not an ELBO ----------------------------

def test_an_autoencoders_reconstruction_term_is_kept_out_of_the_elbo_columns(tmp_path):
    """summary.json of --model ae: its metrics' valid_elbo is the reconstruction term (no KL),
    which compare shows in columns of its own, with a note, never in the valid ELBO column."""
    vae = compare.RunRecord(tmp_path / "vae", {"model": "vae", "seed": 0},
                            {"model": "vae", "test_elbo": -100.0, "test_elbo_stderr": 0.5,
                             "best_epoch_metrics": {"valid_elbo": -101.0, "valid_elbo_stderr": 0.4}})
    ae = compare.RunRecord(tmp_path / "ae", {"model": "ae", "seed": 0},
                           {"model": "ae", "selection": "best validation reconstruction log p(x | code)",
                            "test_reconstruction": -80.0, "test_reconstruction_stderr": 0.3,
                            "best_epoch_metrics": {"valid_elbo": -81.0, "valid_elbo_stderr": 0.2,
                                                   "valid_reconstruction": -81.0,
                                                   "valid_reconstruction_stderr": 0.2}})
    columns, rows = compare.compare_table([vae, ae])
    assert [row["valid ELBO"] for row in rows] == [-101.0, None]
    assert [row[compare.AE_VALID] for row in rows] == [None, -81.0]
    assert (rows[1][compare.AE_TEST], rows[1][f"{compare.AE_TEST} se"]) == (-80.0, 0.3)
    notes = compare.kind_notes([vae, ae])
    assert compare.AE_NOTE in notes and "not a bound on log p(x)" in compare.AE_NOTE
    assert compare.kind_notes([vae]) == []


def test_autoencoders_of_a_mass_and_a_density_are_not_ranked(tmp_path):
    """A Bernoulli autoencoder's reconstruction term is a mass on binary data, a Gaussian one's a
    density on grey levels: compare listed -546 and -8749 side by side without a word."""
    def ae(name, kind, value):
        return compare.RunRecord(tmp_path / name, {"model": "ae", "likelihood": name, "seed": 0, "dataset": "fashion"},
                                 {"model": "ae", "selection": "best validation reconstruction log p(x | code)",
                                  "test_reconstruction": value, "test_reconstruction_stderr": 0.3, "kind": kind,
                                  "quantity": "log p(x | code)"})
    bernoulli, gaussian = ae("bernoulli", BINARY_MASS, -546.0), ae("gaussian", DENSITY, -8749.0)
    columns, rows = compare.compare_table([bernoulli, gaussian])
    assert [row[f"{compare.AE_TEST} kind"] for row in rows] == ["log p(x | code): " + BINARY_MASS,
                                                                 "log p(x | code): " + DENSITY]
    notes = compare.kind_notes([bernoulli, gaussian])
    assert any(note.startswith(f"Note: {compare.AE_TEST} is not comparable between row 1") and "density" in note
               for note in notes), notes
    assert not any("is not comparable" in note for note in compare.kind_notes([bernoulli, ae("b2", BINARY_MASS, -5.0)]))


# -- settings that a run does not use ------------------------------------------------------

def test_compare_shows_no_k_for_runs_trained_with_the_elbo(tmp_path):
    """config.toml records k = 5 for every run; only an importance-weighted bound (the IWAE
    objective, or --select-by valid-iwae) uses it, so an ELBO run's row shows none."""
    elbo = fake_run(tmp_path, "elbo", "bernoulli", "static", BINARY_MASS, [-80.0, -70.0])
    iwae = fake_run(tmp_path, "iwae", "bernoulli", "static", BINARY_MASS, [-79.0, -69.0])
    selected = fake_run(tmp_path, "selected", "bernoulli", "static", BINARY_MASS, [-79.0, -69.0])
    for run, options in ((iwae, {"objective": "iwae", "k": 3}), (selected, {"select_by": "valid-iwae", "k": 7})):
        config = Config()
        config.model.likelihood, config.data.binarize = "bernoulli", "static"
        for key, value in options.items():
            setattr(config.train, key, value)
        (run / "config.toml").write_text(config.validate().dumps())
    records = compare.collect_runs([elbo, iwae, selected])
    assert [r.settings["k"] for r in records] == [None, 3, 7]
    columns, rows = compare.compare_table(records)
    assert "k" in columns and [row["k"] for row in rows] == [None, 3, 7]
    assert "| elbo |  |" in compare.to_markdown(columns, rows)


def test_m1m2_records_the_likelihood_and_objective_it_uses(tmp_path):
    """--model m1m2's M2 models M1's codes with its own Gaussian likelihood and trains the M2
    objective: summary.json and compare say so, and config.toml (which must keep the unused
    defaults to be read back) says in a comment that they are not used."""
    import tomllib

    from pyro_vae.runs import M1M2_LIKELIHOOD, config_text, run_settings, settings_in_effect

    config = Config()
    config.model.model, config.model.m1_run, config.data.labels = "m1m2", "runs/m1", 100
    config.validate()
    assert (config.model.likelihood, config.train.objective) == ("bernoulli", "elbo")  # recorded, not used
    summary = run_settings(config)
    assert (summary["likelihood"], summary["objective"], summary["k"]) == (M1M2_LIKELIHOOD, "m2", None)
    assert settings_in_effect(config)["likelihood"] == M1M2_LIKELIHOOD
    text = config_text(config)
    assert f"# model.likelihood = 'bernoulli' is not used: the run uses \"{M1M2_LIKELIHOOD}\"" in text
    assert "# train.objective = 'elbo' is not used: the run uses 'm2'" in text
    assert Config.from_dict(tomllib.loads(text)).to_dict() == config.to_dict()  # read back as it was
    m2 = Config()
    m2.model.model, m2.data.labels = "m2", 100
    assert (run_settings(m2.validate())["likelihood"], run_settings(m2)["objective"]) == ("bernoulli", "m2")
    plain = Config().validate()
    assert (run_settings(plain)["likelihood"], run_settings(plain)["objective"]) == ("bernoulli", "elbo")
    assert "model.likelihood" not in config_text(plain) and "# train.k = 5 is not used" in config_text(plain)


def test_an_autoencoder_run_records_the_reconstruction_term_it_trains_as_its_objective(tmp_path):
    """--model ae trains log p(x | code), no ELBO, but compare's objective column (and summary.json's
    objective) said "elbo", train.objective's default; they now say what it trains, and config.toml
    notes that its train.objective is not used."""
    from pyro_vae.runs import AUTOENCODER_OBJECTIVE, config_text, run_settings

    config = Config()
    config.model.model = "ae"
    config.validate()
    assert run_settings(config)["objective"] == AUTOENCODER_OBJECTIVE == "reconstruction"
    assert "# train.objective = 'elbo' is not used: the run uses 'reconstruction'" in config_text(config)
    runs = []
    for name, model in (("vae", "vae"), ("ae", "ae")):
        config = Config()
        config.model.model = model
        runs.append(finished_run_dir(tmp_path / name, config))
        (runs[-1] / "summary.json").write_text(json.dumps({"epochs": 1, "best_epoch": 1, "model": model}))
    columns, rows = compare.compare_table(compare.collect_runs(runs))
    assert [(row["model"], row["objective"]) for row in rows] == [("vae", "elbo"), ("ae", "reconstruction")]


def test_an_epochs_setting_keeps_a_column_of_its_own_beside_the_epochs_trained(tmp_path):
    """Runs that differ in --epochs: the setting (the most epochs a run may train) and the
    epochs each run trained (fewer when --patience stopped it) are two columns; the setting
    was once overwritten by the epochs trained, under a header printed twice."""
    records = [compare.RunRecord(tmp_path / name, {"epochs": epochs, "seed": 0},
                                 {"epochs": trained, "best_epoch": trained - 2, "test_elbo": -100.0})
               for name, epochs, trained in (("short", 20, 12), ("long", 40, 40))]
    columns, rows = compare.compare_table(records)
    assert len(columns) == len(set(columns)), columns
    assert [row["max epochs"] for row in rows] == [20, 40]
    assert [row["epochs"] for row in rows] == [12.0, 40.0]
    table = compare.to_markdown(columns, rows)
    assert table.splitlines()[0].startswith("| max epochs | seeds |") and "| 20 | 1 |" in table
    header = compare.to_csv(columns, rows).splitlines()[0].split(",")
    assert len(header) == len(set(header)) and "max epochs" in header


def test_epochs_and_best_epoch_are_whole_numbers_in_the_table(tmp_path):
    """One run's epochs and best epoch showed as "12.0 | 10.0"; a whole mean is now shown whole, a mean
    over seeds that disagree keeps its decimal and its standard error."""
    records = [compare.RunRecord(tmp_path / name, {"latent_dim": dim, "seed": seed},
                                 {"epochs": trained, "best_epoch": trained - 2, "test_elbo": -100.0})
               for name, dim, seed, trained in (("a", 2, 0, 12), ("b", 4, 0, 12), ("c", 4, 1, 13))]
    table = compare.to_markdown(*compare.compare_table(records))
    assert "| 2 | 1 | the images (one run) | 12 | 10 | -100.00 |" in table, table
    assert "| 4 | 2 | the 2 seeds | 12.5 ± 0.50 | 10.5 ± 0.50 | -100.00 ± 0.00 |" in table, table


def test_a_log_likelihood_of_a_checkpoint_since_replaced_is_noted(tmp_path, capsys):
    """After `train --resume`, compare set loglik.json's number (measured on epoch 1's best
    checkpoint) beside the new test ELBO (best epoch 3) without a word, though the file records
    the epoch it measured. Now a note names both epochs and the command that measures again."""
    a = fake_run(tmp_path, "a", "bernoulli", "static", BINARY_MASS, [-80.0, -70.0, -60.0])
    b = fake_run(tmp_path, "b", "bernoulli", "dynamic", BINARY_MASS, [-78.0, -69.0, -57.0])
    for run, measured in ((a, 1), (b, 3)):
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "epochs": 3, "best_epoch": 3}))
        loglik = json.loads((run / "loglik.json").read_text())
        (run / "loglik.json").write_text(json.dumps({**loglik, "checkpoint": "best", "checkpoint_epoch": measured,
                                                     "k": 10}))
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "table")]) == 0
    out = capsys.readouterr().out
    assert (f"Note: the test log p(x) of {a} was measured on its best checkpoint when that was epoch 1, and it is "
            f"epoch 3 now") in out and f"`pyro-vae evaluate {a} --k 10 -o {a / 'loglik.json'}`" in out
    assert f"test log p(x) of {b}" not in out  # measured on the checkpoint it names
    assert compare.stale_loglik_note(compare.read_run(b)) is None


def test_a_row_whose_log_likelihood_some_seeds_lack_shows_none_and_says_why(tmp_path, capsys):
    """Two seeds of one setting, one evaluated: the row showed that seed's log p(x) (-70) with
    no standard error, under "se over: the 2 seeds", as if it were the mean over both."""
    runs = []
    for name, seed, values in (("a0", 0, [-80.0, -70.0, -60.0]), ("a1", 1, [-78.0, -69.0, -57.0]),
                               ("b0", 0, [-90.0, -80.0, -70.0]), ("b1", 1, [-88.0, -79.0, -67.0])):
        run = fake_run(tmp_path, name, "bernoulli", "static" if name[0] == "a" else "dynamic", BINARY_MASS, values)
        config = Config()
        config.data.binarize, config.train.seed = ("static" if name[0] == "a" else "dynamic"), seed
        (run / "config.toml").write_text(config.validate().dumps())
        runs.append(run)
    for path in (runs[1] / "loglik.json", compare.examples_path(runs[1] / "loglik.json")):
        path.unlink()  # seed 1 of the first setting not evaluated
    assert main(["compare", *map(str, runs), "-o", str(tmp_path / "table")]) == 0
    out = capsys.readouterr().out
    with open(tmp_path / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["seeds"] for row in rows] == ["2", "2"]
    assert rows[0]["test log p(x)"] == rows[0]["test log p(x) se"] == rows[0]["test log p(x) bits/dim"] == ""
    # the other row: the mean of its seeds' means -80 and -78, standard error |-80 - (-78)| / 2
    assert float(rows[1]["test log p(x)"]) == pytest.approx(-79.0)
    assert float(rows[1]["test log p(x) se"]) == pytest.approx(1.0)
    assert (f"Note: row 1 (binarize=static) shows no test log p(x), test log p(x) bits/dim: 1 of its 2 seeds has "
            f"them, and a mean over those would pass for one over all 2; measure them for {runs[1]} too "
            "(`pyro-vae evaluate RUN --k K`), or compare the runs one by one.") in out
    assert "row 2" not in out


def test_log_likelihoods_estimated_with_different_k_are_not_paired(tmp_path, capsys):
    """An estimate with K=100 against one with K=10 was paired without a word: the difference
    (here 2 ± 0.58 nats) was partly K's, the estimate rising with K, under a tight s.e."""
    a = fake_run(tmp_path, "a", "bernoulli", "static", BINARY_MASS, [-80.0, -70.0, -60.0])
    b = fake_run(tmp_path, "b", "bernoulli", "static", BINARY_MASS, [-78.0, -69.0, -57.0], beta=2.0)
    compare.save_examples(b / "loglik.json", [-78.0, -69.0, -57.0], np.arange(3), "test", 100, "fashion-mnist")
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "table")]) == 0
    out = capsys.readouterr().out
    reason = ("its log p(x) was estimated with K=100 importance samples and the reference's with K=10; the estimate "
              "rises with K, so their difference would be partly K's; evaluate both with the same --k")
    assert f"no paired difference of {b} against {a}: {reason}." in out
    # and the table, which sets the two means side by side, says so
    for run, k in ((a, 10), (b, 100)):
        loglik = json.loads((run / "loglik.json").read_text())
        (run / "loglik.json").write_text(json.dumps({**loglik, "k": k}))
    assert compare.kind_notes(compare.collect_runs([a, b]))[-1] == (
        "Note: test log p(x) was estimated with different numbers of importance samples (K = 10, 100; the K column); "
        "the estimate rises with K, so numbers of different K cannot be ranked fairly: evaluate every run with the "
        "same --k.")
    assert not (tmp_path / "table-paired.csv").exists()
    records = compare.collect_runs([a, b])
    assert compare.paired_table(records, records[0]) == ([], [(records[1], reason)])


def test_curves_of_runs_whose_elbos_cannot_be_ranked_say_so(tmp_path, monkeypatch):
    """plot --kind curves of a binarized and an 8-bit run drew both ELBOs on one axis called
    "validation ELBO, nats per example", with no kind and no word that they cannot be ranked."""
    drawn = []
    monkeypatch.setattr(compare, "_save", lambda fig, output: drawn.append(fig) or output)
    a = fake_run(tmp_path, "bern", "bernoulli", "static", BINARY_MASS, [-90.0, -80.0])
    b = fake_run(tmp_path, "logistic", "discretized-logistic", "none", EIGHT_BIT_MASS, [-2000.0, -1900.0])
    c = fake_run(tmp_path, "bern2", "bernoulli", "dynamic", BINARY_MASS, [-91.0, -81.0])
    compare.plot_overlaid_curves(compare.collect_runs([a, b]), tmp_path / "curves.png")
    label = " ".join(drawn[0].axes[0].get_ylabel().split())
    assert label == f"validation ELBO, nats per example (a lower bound on log p(x); {BINARY_MASS}; {EIGHT_BIT_MASS})"
    assert " ".join(drawn[0]._supxlabel.get_text().split()) == (
        "Not comparable: validation ELBO of binarize=static, likelihood=bernoulli and binarize=none, "
        f"likelihood=discretized-logistic: {DIFFERENT_DATA}.")
    compare.plot_overlaid_curves(compare.collect_runs([a, c]), tmp_path / "curves.png")
    assert drawn[1]._supxlabel is None  # runs of one kind


def test_runs_on_different_data_sets_are_noted_and_not_paired(tmp_path, capsys):
    """An MNIST and a Fashion-MNIST run, both masses on binary data: the table set their numbers
    side by side with no note, and the paired difference then stopped the command (exit 2)."""
    runs = []
    for name, dataset, values in (("m", "mnist", [-80.0, -70.0, -60.0]), ("f", "fashion-mnist", [-78.0, -69.0, -57.0])):
        run = fake_run(tmp_path, name, "bernoulli", "dynamic", BINARY_MASS, values)
        config = Config()
        config.data.dataset, config.data.binarize = dataset, "dynamic"
        (run / "config.toml").write_text(config.validate().dumps())
        compare.save_examples(run / "loglik.json", values, np.arange(3), "test", 10, dataset)
        runs.append(run)
    assert main(["compare", *map(str, runs), "-o", str(tmp_path / "table")]) == 0
    out = capsys.readouterr().out
    reason = ("one is scored on mnist images and the other on fashion-mnist images: different data sets, so the "
              "numbers cannot be ranked")
    assert f"Note: test log p(x) is not comparable between row 1 (dataset=mnist) and row 2 (dataset=fashion-mnist): " \
           f"{reason}. No paired difference is taken between them." in out
    assert f"Note: test ELBO (and valid ELBO, of the same kind) is not comparable between row 1" in out
    assert (f"no paired difference of {runs[1]} against {runs[0]}: their test log p(x) cannot be ranked (see the "
            "note") in out
    assert not (tmp_path / "table-paired.csv").exists()


def test_runs_on_other_images_of_ones_own_data_are_noted_and_not_paired(tmp_path, capsys):
    """A grid over image_size=16,24 of an image folder: both numbers masses on 8-bit data of
    "image-folder", so compare ranked -5049.78 (768 pixel values) against -11372.83 (1,728) with no
    note and printed their paired difference, -6323.05 ± 1.05 nats per example."""
    runs = []
    for name, settings in (("s16", {"image_size": 16}), ("s24", {"image_size": 24}),
                           ("other", {"image_size": 16, "data_dir": "/data/other"})):
        run = tmp_path / name
        run.mkdir()
        values = [-5000.0, -5100.0, -5050.0]
        compare.save_examples(run / "loglik.json", values, np.arange(3), "test", 10, "image-folder")
        loglik = {"log_likelihood_mean": float(np.mean(values)), "kind": EIGHT_BIT_MASS, "k": 10}
        settings = {"dataset": "image-folder", "data_dir": "/data/faces", "image_mode": "rgb", "seed": 0, **settings}
        runs.append(compare.RunRecord(run, settings, {"epochs": 1, "test_elbo": -5100.0, "kind": EIGHT_BIT_MASS},
                                      loglik))
    reason = ("one is scored on image-folder images with image_size=16 and the other with image_size=24: other "
              "images or other pixels, so the numbers cannot be ranked")
    notes = compare.kind_notes(runs)
    assert (f"Note: test log p(x) is not comparable between row 1 (data_dir=/data/faces, image_size=16) and row 2 "
            f"(data_dir=/data/faces, image_size=24): {reason}. No paired difference is taken between them.") in notes
    assert any("with data_dir=/data/faces and the other with data_dir=/data/other" in note for note in notes)
    paired, refused = compare.paired_table(runs, runs[0])
    assert paired == [] and [(r.run_dir.name, why) for r, why in refused][0] == ("s24", reason)
    # idx and image-folder runs of the same images are still ranked and paired
    same = compare.RunRecord(tmp_path / "s16", {**runs[0].settings, "seed": 1}, runs[0].summary, runs[0].loglik)
    assert compare.run_verdict(runs[0], same, "test log p(x)").ok


def test_train_seconds_are_those_of_every_epoch_not_of_the_last_session(tmp_path):
    """A run resumed for its last epoch reported the last session's seconds only (2.7 s of 9)."""
    resumed = {"epochs": 3, "best_epoch": 3, "test_elbo": -100.0, "seconds_per_epoch": [3.0, 3.5, 2.5],
               "train_seconds_this_session": 2.7}
    older = {"epochs": 2, "best_epoch": 2, "test_elbo": -101.0, "train_seconds_this_session": 6.0}
    records = [compare.RunRecord(tmp_path / name, {"epochs": epochs, "seed": 0}, summary)
               for name, epochs, summary in (("resumed", 3, resumed), ("older", 2, older))]
    columns, rows = compare.compare_table(records)
    assert [row["train s"] for row in rows] == [9.0, 6.0]


@pytest.mark.parametrize("given", ["table", "table.csv", "table.md"])
def test_an_output_given_with_a_csv_or_md_ending_is_the_tables_prefix(tmp_path, capsys, given):
    """`compare -o table.csv` wrote table.csv.csv and table.csv.md; the ending is now taken off the prefix."""
    a = fake_run(tmp_path, "a", "bernoulli", "static", BINARY_MASS, [-80.0, -70.0])
    b = fake_run(tmp_path, "b", "bernoulli", "static", BINARY_MASS, [-78.0, -69.0], beta=2.0)
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / given)]) == 0
    assert sorted(p.name for p in tmp_path.glob("table*")) == ["table-paired.csv", "table-paired.md", "table.csv",
                                                              "table.md"]


def test_a_log_likelihood_of_the_last_checkpoint_beside_the_best_ones_elbo_is_noted(tmp_path, capsys):
    """evaluate --checkpoint last wrote a log p(x) that compare set beside the test ELBO of the best
    checkpoint (another epoch) without a word; now a note names both epochs and the command."""
    a = fake_run(tmp_path, "a", "bernoulli", "static", BINARY_MASS, [-80.0, -70.0, -60.0])
    b = fake_run(tmp_path, "b", "bernoulli", "dynamic", BINARY_MASS, [-78.0, -69.0, -57.0])
    for run, checkpoint in ((a, "last"), (b, "best")):
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "epochs": 3, "best_epoch": 2}))
        loglik = json.loads((run / "loglik.json").read_text())
        (run / "loglik.json").write_text(json.dumps({**loglik, "checkpoint": checkpoint,
                                                     "checkpoint_epoch": 3 if checkpoint == "last" else 2, "k": 10}))
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "table")]) == 0
    out = capsys.readouterr().out
    assert (f"Note: the test log p(x) of {a} is of its last checkpoint (epoch 3), and its test ELBO of its best "
            f"(epoch 2)") in out
    assert f"test log p(x) of {b} is of its last" not in out


def test_settings_that_change_only_what_a_run_draws_or_logs_make_no_column(tmp_path):
    """Two runs differing in `figures` alone made a column of it and a row per run in compare's
    table, as if their models differed; such settings (sweep.UNSWEPT_KEYS) now make no column."""
    a = fake_run(tmp_path, "a", "bernoulli", "static", BINARY_MASS, [-80.0, -70.0])
    b = fake_run(tmp_path, "b", "bernoulli", "static", BINARY_MASS, [-78.0, -69.0])
    text = (b / "config.toml").read_text()
    assert "figures = true" in text
    (b / "config.toml").write_text(text.replace("figures = true", "figures = false"))
    records = compare.collect_runs([a, b])
    assert records[1].settings["figures"] is False  # read back as written
    assert compare.differing_keys(records) == []
    (a / "config.toml").write_text((a / "config.toml").read_text().replace("beta = 1.0", "beta = 2.0"))
    assert compare.differing_keys(compare.collect_runs([a, b])) == ["beta"]


def test_the_tables_say_the_unit_of_their_log_likelihoods(tmp_path, capsys):
    """compare's table (and compare.md) held bare ELBOs and log p(x), "-7340.73 ± 43.36", with no word of
    their unit, and compare-paired.md the paired differences with none; the unit is now said under each."""
    a = fake_run(tmp_path, "a", "gaussian-learned", "none", DEQUANTIZED_BOUND, [-4000.0, -4100.0, -3900.0])
    b = fake_run(tmp_path, "b", "discretized-logistic", "none", EIGHT_BIT_MASS, [-2000.0, -1900.0, -1950.0])
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "table")]) == 0
    unit = ("Units: test ELBO and test log p(x) in nats per example (bits/dim: -nats / (D ln 2), D the pixel values "
            "scored); each ± is one standard error, over what the \"se over\" column says.")
    assert unit in capsys.readouterr().out
    assert unit in (tmp_path / "table.md").read_text()
    assert (f"Paired difference of test log p(x) against {a}, in nats per example, on the images both evaluated."
            in (tmp_path / "table-paired.md").read_text())
    columns, _ = compare.compare_table(compare.collect_runs([a, b]))
    assert compare.unit_notes([c for c in columns if "ELBO" not in c and "log p(x)" not in c]) == []


def test_a_sweeps_runs_without_a_summary_are_named_under_the_table(tmp_path, capsys):
    """compare SWEEP left out a grid point still training (no summary.json) without a word, so it
    vanished from the table; it is now named in a note under it, with how to finish it."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    fake_run(sweep, "beta=1", "bernoulli", "static", BINARY_MASS, [-80.0, -70.0])
    fake_run(sweep, "beta=2", "bernoulli", "static", BINARY_MASS, [-78.0, -69.0], beta=2.0)
    training = fake_run(sweep, "beta=3", "bernoulli", "static", BINARY_MASS, [-77.0, -68.0], beta=3.0)
    (training / "summary.json").unlink()
    assert main(["compare", str(sweep)]) == 0
    note = (f"Note: not in the table, with no summary.json yet (still training, stopped or failed): {training} (of "
            f"the sweep {sweep}); finish each with the same sweep command again, or `pyro-vae train --resume RUN`.")
    assert note in capsys.readouterr().out
    assert note in (sweep / "compare.md").read_text()
    assert [r.run_dir.name for r in compare.collect_runs([sweep])] == ["beta=1", "beta=2"]
    assert compare.unfinished_notes([sweep / "beta=1"]) == []  # a run directory given alone: refused, not noted
    # the figures of the sweep leave it out too, and say so
    assert main(["plot", str(sweep), "--kind", "curves", "-o", str(tmp_path / "curves.png")]) == 0
    assert note.replace("not in the table", "not in the figure") in capsys.readouterr().out


def test_an_earlier_comparisons_paired_table_is_removed_not_left_beside_a_new_table(tmp_path, capsys):
    """compare SWEEP of two evaluated runs wrote compare-paired.md; once the sweep had a third run,
    compare SWEEP (no reference, so no paired table) rewrote compare.md and left that paired table
    beside it, where it passed for this comparison's. It is now removed; a file of that name that
    compare did not write is left as it is."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    fake_run(sweep, "beta=1", "bernoulli", "static", BINARY_MASS, [-80.0, -70.0])
    fake_run(sweep, "beta=2", "bernoulli", "static", BINARY_MASS, [-78.0, -69.0], beta=2.0)
    assert main(["compare", str(sweep)]) == 0
    assert (sweep / "compare-paired.md").is_file() and (sweep / "compare-paired.csv").is_file()
    fake_run(sweep, "beta=3", "bernoulli", "static", BINARY_MASS, [-77.0, -68.0], beta=3.0)
    capsys.readouterr()
    assert main(["compare", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert not (sweep / "compare-paired.md").exists() and not (sweep / "compare-paired.csv").exists()
    assert f"removed {sweep / 'compare-paired.md'}: the paired table of an earlier comparison" in out
    assert "| 3.0 |" in (sweep / "compare.md").read_text()
    # a file compare did not write, at the name its paired table would have: never deleted
    mine = tmp_path / "table-paired.md"
    mine.write_text("my notes on the paired runs\n")
    assert main(["compare", str(sweep), "-o", str(tmp_path / "table")]) == 0
    assert mine.read_text() == "my notes on the paired runs\n"
    assert "removed" not in capsys.readouterr().out


@pytest.mark.parametrize("given", ["out/", "out/new/", "."])
def test_an_output_folder_gets_the_tables_inside_it(tmp_path, capsys, monkeypatch, given):
    """`compare -o out/` wrote out.csv and out.md beside the folder and the paired tables as out/-paired.csv
    (and `-o .` was a traceback); a folder now gets compare.csv, compare.md and compare-paired.* inside it."""
    a = fake_run(tmp_path, "a", "bernoulli", "static", BINARY_MASS, [-80.0, -70.0])
    b = fake_run(tmp_path, "b", "bernoulli", "static", BINARY_MASS, [-78.0, -69.0], beta=2.0)
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    monkeypatch.chdir(work)
    assert main(["compare", str(a), str(b), "-o", given]) == 0
    folder = work / given
    assert sorted(p.name for p in folder.glob("compare*")) == ["compare-paired.csv", "compare-paired.md",
                                                              "compare.csv", "compare.md"]
    assert not list(folder.parent.glob(f"{folder.name}.*"))  # nothing beside the folder (out.csv, out.md)


def test_paired_rows_of_two_sweeps_runs_of_one_name_are_told_apart(tmp_path, capsys):
    """compare A B --reference REF of two sweeps, each with a run beta=2, gave two paired rows named
    "beta=2" that could not be told apart; each row is now named by the shortest path that tells it apart."""
    reference = fake_run(tmp_path, "ref", "bernoulli", "static", BINARY_MASS, [-80.0, -70.0])
    for sweep, values in (("sweep-a", [-79.0, -69.0]), ("sweep-b", [-77.0, -60.0])):
        (tmp_path / sweep).mkdir()
        (tmp_path / sweep / "sweep.json").write_text("{}")
        fake_run(tmp_path / sweep, "beta=2", "bernoulli", "static", BINARY_MASS, values, beta=2.0)
    single = fake_run(tmp_path / "sweep-b", "beta=3", "bernoulli", "static", BINARY_MASS, [-78.0, -68.0], beta=3.0)
    prefix = tmp_path / "table"
    assert main(["compare", str(tmp_path / "sweep-a"), str(tmp_path / "sweep-b"), "--reference", str(reference),
                 "-o", str(prefix)]) == 0
    with open(f"{prefix}-paired.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["run"], float(row["paired difference"])) for row in rows] == [
        ("sweep-a/beta=2", 1.0), ("sweep-b/beta=2", 6.5), ("beta=3", 2.0)]  # a name no other run has: kept short
    assert "| sweep-a/beta=2 |" in capsys.readouterr().out
    assert compare.distinct_names([single, tmp_path / "x" / "beta=3"]) == ["sweep-b/beta=3", "x/beta=3"]
