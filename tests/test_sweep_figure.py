"""The sweep figure (plot --kind sweep, compare --figure, a sweep's sweep.png) shows every
point with its uncertainty and says which: the standard error over the seeds, or, for a
point of one seed, the run's own standard error over its images (it drew no bar at all under
a title claiming "mean ± s.e. over 1 seeds"); its y axis names the kind of number. A single
run is not a sweep. Run directories are written by hand, as compare reads them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pyro_vae.cli import main
from pyro_vae.config import Config
from pyro_vae.errors import PyroVAEError
from pyro_vae.experiments import compare
from pyro_vae.inference.kinds import BINARY_MASS
from run_dirs import finished_run_dir


def fake_run(root, beta, seed, test_elbo, stderr=0.4):
    """A finished run of ``beta`` and ``seed``: config.toml, a last checkpoint, metrics.csv,
    summary.json (with the test ELBO's standard error over the test images unless None)."""
    config = Config()
    config.train.beta, config.train.seed = beta, seed
    run = finished_run_dir(root / f"beta={beta},seed={seed}", config)
    summary = {"epochs": 1, "best_epoch": 1, "test_elbo": test_elbo, "kind": BINARY_MASS, "unit": "nats per example",
               "best_epoch_metrics": {"valid_elbo": test_elbo - 1.0, "valid_elbo_stderr": 0.25}}
    if stderr is not None:
        summary["test_elbo_stderr"] = stderr
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def drawn(monkeypatch):
    """The figures plot_sweep_figure hands to be saved (nothing is written)."""
    figures = []
    monkeypatch.setattr(compare, "_save", lambda fig, output: figures.append(fig) or output)
    return figures


def bars(ax) -> list[float]:
    """The half-lengths of the error bars of the first line of ``ax``."""
    container = ax.containers[0]
    return [float(seg[1][1] - seg[0][1]) / 2 for seg in container.lines[2][0].get_segments()]


def test_a_point_of_one_seed_shows_its_runs_own_standard_error_and_says_so(tmp_path, drawn):
    records = [compare.read_run(fake_run(tmp_path, 1.0, 0, -100.0, 0.3)),
               compare.read_run(fake_run(tmp_path, 2.0, 0, -104.0, 0.5))]
    compare.plot_sweep_figure(records, tmp_path / "f.png", "test_elbo")
    ax = drawn[0].axes[0]
    assert bars(ax) == pytest.approx([0.3, 0.5])  # were [0, 0]
    assert "one seed per point: ± the run's s.e. over its test images" in ax.get_title()
    assert "over 1 seeds" not in ax.get_title()
    label = " ".join(ax.get_ylabel().split())  # wrapped to the axis' height
    assert f"a lower bound on log p(x); {BINARY_MASS}" in label and "nats per example" in label


def test_points_of_several_seeds_show_the_standard_error_over_the_seeds(tmp_path, drawn):
    records = [compare.read_run(fake_run(tmp_path, beta, seed, value))
               for beta, seed, value in ((1.0, 0, -100.0), (1.0, 1, -102.0), (2.0, 0, -104.0), (2.0, 1, -108.0))]
    compare.plot_sweep_figure(records, tmp_path / "f.png", "test_elbo")
    ax = drawn[0].axes[0]
    assert bars(ax) == pytest.approx([np.std([-100, -102], ddof=1) / np.sqrt(2), np.std([-104, -108], ddof=1) / np.sqrt(2)])
    assert "mean ± s.e. over 2 seeds" in ax.get_title() and "run's s.e." not in ax.get_title()


def test_a_validation_metric_names_the_validation_images(tmp_path, drawn):
    records = [compare.read_run(fake_run(tmp_path, beta, 0, -100.0)) for beta in (1.0, 2.0)]
    compare.plot_sweep_figure(records, tmp_path / "f.png", "valid_elbo")
    ax = drawn[0].axes[0]
    assert bars(ax) == pytest.approx([0.25, 0.25]) and "over its validation images" in ax.get_title()


def test_a_point_of_one_seed_without_a_recorded_standard_error_is_refused(tmp_path, drawn):
    records = [compare.read_run(fake_run(tmp_path, 1.0, 0, -100.0, None)),
               compare.read_run(fake_run(tmp_path, 2.0, 0, -104.0))]
    with pytest.raises(PyroVAEError, match=r"records no standard error of its test_elbo .*sweep --seeds 2"):
        compare.plot_sweep_figure(records, tmp_path / "f.png", "test_elbo")
    assert not drawn


def test_plot_kind_sweep_of_a_single_run_is_refused_in_one_sentence(tmp_path, capsys):
    run = fake_run(tmp_path, 1.0, 0, -100.0)
    out = tmp_path / "f.png"
    assert main(["plot", str(run), "--kind", "sweep", "-o", str(out)]) == 2  # drew one point at x = "None"
    err = capsys.readouterr().err
    assert "is a single run (it has no sweep.json); give a sweep directory" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and not out.exists()
    assert main(["plot", str(run), str(fake_run(tmp_path, 2.0, 0, -104.0)), "--kind", "sweep", "-o", str(out)]) == 0
    assert out.stat().st_size > 0  # several runs that differ in a setting are a sweep's figure


def test_a_setting_and_seed_drawn_twice_is_one_seed_not_two(tmp_path, drawn):
    """A random sampler drew one point twice with seed 0; compare showed '2 seeds ... ± 0.00'."""
    (tmp_path / "again").mkdir()
    runs = [fake_run(tmp_path, 1.0, 0, -100.0), fake_run(tmp_path / "again", 1.0, 0, -100.0),
            fake_run(tmp_path, 2.0, 0, -99.0, stderr=0.5)]
    records = compare.collect_runs(runs)
    columns, rows = compare.compare_table(records)
    row = next(r for r in rows if r["beta"] == 1.0)
    assert row["seeds"] == 1 and row["se over"] == "the images (one run)" and row["test ELBO se"] == 0.4
    notes = compare.kind_notes(records)
    assert any(f"{runs[1]} has the settings and seed of {runs[0]}" in note and "counted once" in note for note in notes)
    compare.plot_sweep_figure(records, tmp_path / "f.png")
    assert bars(drawn[0].axes[0]) == pytest.approx([0.4, 0.5])  # each point's own s.e., not 0 over "2 seeds"


def test_runs_that_differ_in_their_seed_alone_draw_each_seed_and_the_mean_over_them(tmp_path, drawn):
    """Runs of one setting and three seeds drew one point at an x tick "None" on an axis named
    "seed". Now each seed is a point at its seed, ± its own s.e., and the mean over the seeds
    ± the s.e. of that mean is a line and band, in numbers in the title."""
    records = [compare.read_run(fake_run(tmp_path, 1.0, seed, value, se))
               for seed, value, se in ((2, -104.0, 0.5), (0, -100.0, 0.3), (1, -102.0, 0.4))]
    compare.plot_sweep_figure(records, tmp_path / "f.png", "test_elbo")
    ax = drawn[0].axes[0]
    points = ax.lines[0].get_xydata().tolist()
    assert points == [[0.0, -100.0], [1.0, -102.0], [2.0, -104.0]]  # sorted by seed
    assert bars(ax) == pytest.approx([0.3, 0.4, 0.5])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    se = np.std([-100, -102, -104], ddof=1) / np.sqrt(3)
    mean_line = [line for line in ax.lines if line.get_label().startswith("mean over the 3 seeds")][0]
    assert mean_line.get_ydata()[0] == pytest.approx(-102.0)
    assert f"-102.00 ± {se:.2f} over 3 seeds" in ax.get_title()
    assert ax.get_xlabel() == "seed (the runs differ in nothing else)"


def test_points_of_kinds_that_cannot_be_ranked_are_noted_under_the_figure(tmp_path, drawn):
    """A grid over the likelihood drew a mass on binary data and a density on one axis with no
    word but the y label, whose second kind ran past the figure's edge; the compare table's
    note named the test ELBO alone, though its valid ELBO column is of the same kinds."""
    from pyro_vae.inference.kinds import DENSITY, comparable

    records = []
    for likelihood, binarize, kind, value in (("bernoulli", "dynamic", BINARY_MASS, -100.0),
                                              ("continuous-bernoulli", "none", DENSITY, 900.0)):
        config = Config()
        config.model.likelihood, config.data.binarize = likelihood, binarize
        run = finished_run_dir(tmp_path / likelihood, config)
        (run / "summary.json").write_text(json.dumps({
            "epochs": 1, "best_epoch": 1, "test_elbo": value, "test_elbo_stderr": 0.5, "kind": kind,
            "best_epoch_metrics": {"valid_elbo": value, "valid_elbo_stderr": 0.5}}))
        records.append(compare.read_run(run))
    reason = comparable(BINARY_MASS, DENSITY).reason
    compare.plot_sweep_figure(records, tmp_path / "f.png", "valid_elbo")
    note = " ".join(drawn[0]._supxlabel.get_text().split())
    assert note == ("Not comparable: valid_elbo of binarize=dynamic, likelihood=bernoulli and binarize=none, "
                    f"likelihood=continuous-bernoulli: {reason}.")
    label = drawn[0].axes[0].get_ylabel()
    assert BINARY_MASS in " ".join(label.split()) and DENSITY in " ".join(label.split())
    assert max(map(len, label.splitlines())) <= 50  # wrapped, not cut off at the figure's edge
    assert any(note.startswith("Note: test ELBO (and valid ELBO, of the same kind) is not comparable")
               for note in compare.kind_notes(records))
    # points of one kind: no note
    same = [compare.read_run(fake_run(tmp_path, beta, 0, -100.0 - beta)) for beta in (1.0, 2.0)]
    compare.plot_sweep_figure(same, tmp_path / "g.png", "valid_elbo")
    assert drawn[1]._supxlabel is None


def test_the_curves_of_one_sweep_directory_are_overlaid(tmp_path, drawn, capsys):
    """plot SWEEP --kind curves (the help: "several runs or sweep directories for --kind
    curves") took the one sweep directory for a run directory and refused it."""
    for beta in (1.0, 2.0):
        fake_run(tmp_path, beta, 0, -100.0 - beta)
    (tmp_path / "sweep.json").write_text("{}")
    assert main(["plot", str(tmp_path), "--kind", "curves", "-o", str(tmp_path / "curves.png")]) == 0
    (ax,) = drawn[0].axes
    assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] == [
        "beta=1.0", "beta=2.0"]


def test_a_selection_figure_of_an_elbo_and_an_iwae_grid_says_the_points_are_different_bounds(tmp_path, drawn):
    """--metric selection over objective=elbo,iwae drew the ELBO of one point and the IWAE bound
    of the other on one axis, as if one number, the IWAE bound's point the higher by its K."""
    records = []
    for objective, selection, value in (("elbo", "best validation ELBO", -100.0),
                                        ("iwae", "best validation IWAE bound (K=5)", -97.0)):
        config = Config()
        config.train.objective = objective
        run = finished_run_dir(tmp_path / objective, config)
        (run / "summary.json").write_text(json.dumps({
            "epochs": 1, "best_epoch": 1, "test_elbo": value, "kind": BINARY_MASS, "selection": selection,
            "best_valid_criterion": value, "best_epoch_metrics": {"valid_elbo": value, "valid_elbo_stderr": 0.5}}))
        records.append(compare.read_run(run))
    compare.plot_sweep_figure(records, tmp_path / "f.png", "selection")
    assert " ".join(drawn[0]._supxlabel.get_text().split()) == (
        "Not comparable: selection is the validation ELBO at objective=elbo; the validation IWAE bound (K=5) "
        "at objective=iwae, k=5 (a bound with more importance samples is higher for the same model).")
    compare.plot_sweep_figure(records, tmp_path / "f.png", "valid_elbo")  # the same number at every point
    assert drawn[1]._supxlabel is None


def test_an_autoencoders_number_is_not_called_a_bound_on_log_p_x(tmp_path, drawn):
    """A grid over model=ae,vae: the figure called the autoencoder's reconstruction term "a
    lower bound on log p(x)" of an "unknown" kind, beside the VAE's ELBO with no note; a
    sweep's line after its trial said "a lower bound on log p(x)" of it as well."""
    from pyro_vae.experiments.sweep import describe_metric

    records = []
    for model, summary in (("ae", {"selection": "best validation reconstruction log p(x | code)",
                                   "test_reconstruction": -60.0}),
                           ("vae", {"selection": "best validation ELBO", "test_elbo": -100.0, "kind": BINARY_MASS})):
        config = Config()
        config.model.model = model
        run = finished_run_dir(tmp_path / model, config)
        (run / "summary.json").write_text(json.dumps({
            "epochs": 1, "best_epoch": 1, "model": model, **summary,
            "best_epoch_metrics": {"valid_elbo": -60.0 if model == "ae" else -100.0, "valid_elbo_stderr": 0.5}}))
        records.append(compare.read_run(run))
    compare.plot_sweep_figure(records, tmp_path / "f.png", "valid_elbo")
    label = " ".join(drawn[0].axes[0].get_ylabel().split())
    assert label == ("valid_elbo, nats per example (a lower bound on log p(x); an autoencoder's reconstruction term; "
                     f"{BINARY_MASS})")
    assert " ".join(drawn[0]._supxlabel.get_text().split()) == (
        "Not comparable: valid_elbo of model=ae, objective=reconstruction is an autoencoder's reconstruction "
        "log p(x | code): not a bound on log p(x), unlike the others' bounds.")  # an ae trains its reconstruction term
    assert describe_metric(records[0].summary, "valid_elbo") == (
        "valid_elbo -60.0000 ± 0.5000 nats per example (an autoencoder's reconstruction log p(x | code): not a bound "
        "on log p(x))")


def test_the_axis_of_a_conditional_models_bounds_names_what_they_bound(tmp_path, drawn):
    """A sweep of CVAE runs (beta 1 and 4, as the label-fidelity study runs) drew its validation
    ELBO against an axis reading "a lower bound on log p(x)", though each bounds log p(x | y),
    as the sweep's own line and the compare table say; quadrant completion's likewise. The
    axis names the quantity each run records (or, from a summary without one, its model's)."""
    from pyro_vae.inference.kinds import GIVEN_LABEL, quantity

    def conditional_run(name, model, beta, recorded):
        config = Config()
        config.model.model, config.train.beta = model, beta
        run = finished_run_dir(tmp_path / name, config)
        (run / "summary.json").write_text(json.dumps({
            "epochs": 1, "best_epoch": 1, "model": model, "test_elbo": -100.0, "test_elbo_stderr": 0.3,
            "kind": BINARY_MASS, **({"quantity": quantity(model)} if recorded else {}),
            "best_epoch_metrics": {"valid_elbo": -101.0, "valid_elbo_stderr": 0.25}}))
        return compare.read_run(run)

    records = [conditional_run("beta=1", "cvae", 1.0, True), conditional_run("beta=4", "cvae", 4.0, False)]
    compare.plot_sweep_figure(records, tmp_path / "f.png", "valid_elbo")
    label = " ".join(drawn[-1].axes[0].get_ylabel().split())
    assert label == f"valid_elbo, nats per example (a lower bound on {GIVEN_LABEL}; {BINARY_MASS})"
    records = [conditional_run("q-beta=1", "quadrant", 1.0, True), conditional_run("q-beta=4", "quadrant", 4.0, True)]
    compare.plot_overlaid_curves(records, tmp_path / "c.png")
    label = " ".join(drawn[-1].axes[0].get_ylabel().split())
    assert f"(a lower bound on {quantity('quadrant')}; {BINARY_MASS})" in label and "log p(x);" not in label


def test_the_note_under_the_figure_names_runs_by_the_settings_they_use(tmp_path, drawn):
    """The note under overlaid curves of a CVAE and a two-layer VAE named the CVAE
    "model=cvae, top_latent_dim=50, top_hidden_dims=100,100", settings only --model hvae uses
    (its config.toml records them at their defaults), where the legend and compare's table
    name it "model=cvae"."""
    from pyro_vae.inference.kinds import quantity

    records = []
    for model in ("cvae", "hvae"):
        config = Config()
        config.model.model = model
        if model == "hvae":
            config.model.top_latent_dim = 3
        run = finished_run_dir(tmp_path / model, config)
        (run / "summary.json").write_text(json.dumps({
            "epochs": 1, "best_epoch": 1, "model": model, "test_elbo": -100.0, "test_elbo_stderr": 0.3,
            "kind": BINARY_MASS, "quantity": quantity(model),
            "best_epoch_metrics": {"valid_elbo": -101.0, "valid_elbo_stderr": 0.25}}))
        records.append(compare.read_run(run))
    compare.plot_overlaid_curves(records, tmp_path / "c.png")
    legend = [t.get_text() for t in drawn[-1].axes[0].get_legend().get_texts()]
    assert legend == ["model=cvae", "model=hvae, top_latent_dim=3"]
    note = " ".join(drawn[-1]._supxlabel.get_text().split())
    assert note.startswith("Not comparable: validation ELBO of model=cvae and model=hvae, top_latent_dim=3: "), note


def test_runs_of_long_paths_are_named_by_the_end_of_their_path_and_the_panels_keep_their_room(tmp_path, monkeypatch):
    """A sweep over --grid init_from=/long/path/r1,/long/path/r2 labelled the x ticks and the
    legends with the whole paths: the tick labels ran into each other and the figure warned
    "constrained_layout not applied because axes sizes collapsed to zero". A path is now named
    by the fewest of its last components that tell it from the others (r1, r2)."""
    import warnings

    drawn, save = [], compare._save
    monkeypatch.setattr(compare, "_save", lambda fig, output: drawn.append(fig) or save(fig, output))
    sources = tmp_path / ("pretrained-models-for-the-fine-tuning-study-of-" + "x" * 40)
    records = []
    for name in ("r1", "r2"):
        for beta in (1.0, 2.0):
            config = Config()
            config.train.init_from, config.train.beta = str(sources / name), beta
            run = finished_run_dir(tmp_path / f"{name}-{beta}", config)
            (run / "summary.json").write_text(json.dumps({
                "epochs": 1, "best_epoch": 1, "test_elbo": -100.0 - beta, "test_elbo_stderr": 0.3,
                "kind": BINARY_MASS, "unit": "nats per example"}))
            records.append(compare.read_run(run))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the collapsed layout's warning fails the test
        compare.plot_sweep_figure(records, tmp_path / "sweep.png", "test_elbo")
        compare.plot_overlaid_curves(records, tmp_path / "curves.png")
    by_beta, by_source = drawn[0].axes
    assert [t.get_text() for t in by_source.get_xticklabels()] == ["r1", "r2"]
    assert [t.get_text() for t in by_beta.get_legend().get_texts()] == ["init_from=r1", "init_from=r2"]
    legend = [t.get_text() for t in drawn[1].axes[0].get_legend().get_texts()]
    assert legend == ["beta=1.0, init_from=r1", "beta=2.0, init_from=r1", "beta=1.0, init_from=r2",
                      "beta=2.0, init_from=r2"]
