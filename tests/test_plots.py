"""Figures: each kind from the CLI is a PNG of the expected size that is not blank, and
the latent-space maths behind interpolation and arithmetic is right."""

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from pyro_vae.build import build_vae
from pyro_vae.cli import main
from pyro_vae.config import ModelConfig
from pyro_vae.plots import apply_attribute, attribute_vector, interpolate_codes, principal_components

TINY = ["--dataset", "idx", "--hidden-dims", "64", "--epochs", "2", "--batch-size", "64", "--no-progress"]

# (kind, extra flags, expected width x height in pixels) for a 2-D latent run.
KINDS = [
    ("samples", ["-n", "16"], (600, 640)),
    ("reconstructions", ["-n", "16"], (800, 160)),
    ("latent", [], (700, 600)),
    ("manifold", [], (800, 800)),
    ("interpolate", ["--index-a", "0", "--index-b", "5"], (1100, 310)),
    ("arithmetic", ["--attribute", "1"], (700, 570)),  # the input, then five alphas
    ("prior-check", [], (1200, 520)),  # one row of histograms for 2 dimensions
    ("curves", [], (1100, 400)),
]


@pytest.fixture(scope="module")
def run_2d(idx_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("plots") / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--latent-dim", "2", *TINY]) == 0
    return run


@pytest.mark.parametrize("kind,flags,size", KINDS)
def test_each_figure_kind_is_a_non_blank_png_of_the_expected_size(run_2d, tmp_path, kind, flags, size):
    out = tmp_path / f"{kind}.png"
    assert main(["plot", str(run_2d), "--kind", kind, "-o", str(out), *flags]) == 0
    image = imread(out)
    assert (image.shape[1], image.shape[0]) == size
    grey = image[..., :3].mean(-1)
    assert grey.std() > 0.05, "the figure is blank"


def test_pdf_output(run_2d, tmp_path):
    assert main(["plot", str(run_2d), "--kind", "samples", "-o", str(tmp_path / "s.pdf")]) == 0
    assert (tmp_path / "s.pdf").read_bytes().startswith(b"%PDF")


def test_training_writes_curves(run_2d):
    assert imread(run_2d / "curves.png").std() > 0.05


@pytest.mark.parametrize("argv,message", [
    (["--kind", "curves"], "has no metrics.csv"),
    (["--kind", "arithmetic"], "needs --attribute"),
    (["--kind", "arithmetic", "--attribute", "Sock"], "unknown attribute 'Sock'"),
    (["--kind", "interpolate", "--index-a", "100000"], "--index-a and --index-b must be"),
    (["--kind", "arithmetic", "--attribute", "0", "--attribute-file", "labels.txt"], "give one of them"),
    # the first two images both have the attribute: the sentence named no fix
    (["--kind", "arithmetic", "--attribute-file", "first-two.txt", "--limit", "2"],
     "(of the 2 test images read, 2 have it and 0 not); give a larger --limit"),
])
def test_missing_pieces_get_a_sentence(run_2d, tmp_path, capsys, argv, message):
    run = run_2d
    if "curves" in argv:  # a copy of the run without its metrics
        import shutil
        run = tmp_path / "copy"
        shutil.copytree(run_2d, run)
        (run / "metrics.csv").unlink()
    (tmp_path / "labels.txt").write_text("1\n0\n" * 5000)  # a readable 0/1 file: the pair is what is refused
    (tmp_path / "first-two.txt").write_text("1\n1\n" + "0\n1\n" * 4999)
    argv = [str(tmp_path / a) if a.endswith(".txt") else a for a in argv]
    assert main(["plot", str(run), *argv, "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_manifold_refuses_more_than_two_dimensions(idx_dir, tmp_path, capsys):
    run = tmp_path / "run5"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--latent-dim", "5", *TINY]) == 0
    assert main(["plot", str(run), "--kind", "manifold", "-o", str(tmp_path / "m.png")]) == 2
    assert "needs a 2-D latent" in capsys.readouterr().err


def test_interpolation_endpoints_and_paths():
    z_a, z_b = torch.tensor([3.0, 0.0, 1.0]), torch.tensor([0.0, 2.0, -1.0])
    for method in ("linear", "spherical"):
        path = interpolate_codes(z_a, z_b, 7, method)
        assert path.shape == (7, 3)
        assert torch.allclose(path[0], z_a, atol=1e-6) and torch.allclose(path[-1], z_b, atol=1e-6)
    linear = interpolate_codes(z_a, z_b, 5, "linear")
    assert torch.allclose(linear[2], (z_a + z_b) / 2)
    spherical = interpolate_codes(z_a, z_b, 5, "spherical")
    # Slerp keeps the norm on the straight line between the endpoints' norms; lerp cuts inside.
    norms = torch.linspace(z_a.norm().item(), z_b.norm().item(), 5)
    assert torch.allclose(spherical.norm(dim=1), norms, atol=1e-5)
    assert linear[2].norm() < spherical[2].norm() - 0.1


def test_interpolation_endpoints_decode_the_inputs_codes():
    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=4, hidden_dims=[16]), (1, 28, 28))
    x = torch.rand(2, 1, 28, 28)
    codes = guide.encode(x)[0]
    path = interpolate_codes(codes[0], codes[1], 6, "spherical")
    decoded = model.decode_mean(path)
    assert torch.allclose(decoded[0], model.decode_mean(codes[0]), atol=1e-5)
    assert torch.allclose(decoded[-1], model.decode_mean(codes[1]), atol=1e-5)


def test_attribute_vector_and_alpha_zero():
    codes = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 0.0], [0.0, 2.0]])
    mask = torch.tensor([True, True, False, False])
    vector = attribute_vector(codes, mask)
    assert torch.allclose(vector, torch.tensor([2.0, 0.0]))
    rows = apply_attribute(codes[2], vector, (-2, 0, 1))
    assert torch.equal(rows[1], codes[2])
    assert torch.allclose(rows[0], codes[2] - 2 * vector) and torch.allclose(rows[2], codes[2] + vector)
    with pytest.raises(ValueError):
        attribute_vector(codes, torch.ones(4, dtype=torch.bool))


def test_principal_components_recover_the_main_axis():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(500, generator=g)
    codes = torch.stack([t, 2 * t, 0.01 * torch.randn(500, generator=g)], 1)
    pcs = principal_components(codes)
    assert abs(np.corrcoef(pcs[:, 0].numpy(), t.numpy())[0, 1]) > 0.999
    assert pcs[:, 1].std() < 0.05


def test_tensorboard_logs_scalars_every_epoch_and_images(idx_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "tb"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--latent-dim", "2", *TINY,
                 "--tensorboard", "true", "--figure-every", "2"]) == 0
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    valid = events.Scalars("valid/elbo")
    assert [e.step for e in valid] == [1, 2]
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert [round(e.value, 3) for e in valid] == [round(float(r.split(",")[3]), 3) for r in rows]
    assert {"samples", "reconstructions"} <= set(events.Tags()["images"])
    assert [e.step for e in events.Images("samples")] == [1, 2]
    # what the bare scalars are, said once (they named neither their bound nor their data's kind)
    (note,) = events.Tensors("numbers/text_summary")
    assert note.tensor_proto.string_val[0].decode() == (
        "The scalars are in nats per example (train/objective: the ELBO); the bounds and estimates are of log p(x), "
        "a probability mass on binary data.")


@pytest.mark.parametrize("model,tags", [("cvae", {"samples", "reconstructions"}), ("quadrant", {"completions"})])
def test_tensorboard_logs_the_image_grids_of_a_conditional_model(idx_dir, tmp_path, model, tags):
    """--tensorboard true logs "image grids" (README), but for a CVAE, M2, the ADGM and quadrant
    completion it logged none, without a word: a labelled model's samples are one row per class,
    its reconstructions decoded with their labels; quadrant completion's grid its completions."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / model
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--latent-dim", "2", *TINY,
                 "--epochs", "1", "--model", model, "--figures", "false", "--tensorboard", "true"]) == 0
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    assert set(events.Tags()["images"]) == tags
    if model == "cvae":  # 4 classes: 4 rows of 8 samples of 28 x 28 with a pixel of padding
        (image,) = events.Images("samples")
        assert (image.width, image.height) == (8 * 29 + 1, 4 * 29 + 1)


def test_tensorboard_turned_on_at_a_resume_logs_the_epochs_trained_before(idx_dir, tmp_path):
    """train --resume RUN --tensorboard true of a run trained without it: valid/elbo began at
    the resumed epoch, the epochs before missing from its curve."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "tb"
    flags = ["--data-dir", str(idx_dir), "--latent-dim", "2", *TINY, "--figures", "false"]
    assert main(["train", "--run-dir", str(run), *flags, "--epochs", "1"]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "2", "--tensorboard", "true", "--no-progress"]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 0  # logging on: not twice
    valid = EventAccumulator(str(run / "tensorboard")).Reload().Scalars("valid/elbo")
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert [(e.step, round(e.value, 3)) for e in valid] == [(int(r.split(",")[0]), round(float(r.split(",")[3]), 3))
                                                            for r in rows]


def test_an_epoch_checkpointed_before_a_kill_stopped_its_tensorboard_logging_is_logged_on_resume(idx_dir, tmp_path,
                                                                                                    monkeypatch):
    """A sweep's run killed (kill -9) after epoch 2's checkpoint, before its scalars reached
    TensorBoard: the resumed run rewrote metrics.csv from the checkpoint (epochs 1 to 4) but its
    TensorBoard record went on from epoch 3, valid/elbo missing epoch 2 for good."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pyro_vae import runs

    class Killed(BaseException):
        pass

    real = runs._log_tensorboard

    def log_until_killed(board, row, *args, **kwargs):
        if row["epoch"] == 2:  # the checkpoint of epoch 2 is written; its logging never happens
            raise Killed
        return real(board, row, *args, **kwargs)

    run = tmp_path / "tb"
    flags = ["--data-dir", str(idx_dir), "--latent-dim", "2", *TINY, "--figures", "false", "--tensorboard", "true"]
    monkeypatch.setattr(runs, "_log_tensorboard", log_until_killed)
    with pytest.raises(Killed):
        main(["train", "--run-dir", str(run), *flags, "--epochs", "3"])
    monkeypatch.setattr(runs, "_log_tensorboard", real)
    assert main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 0
    valid = EventAccumulator(str(run / "tensorboard")).Reload().Scalars("valid/elbo")
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert [(e.step, round(e.value, 3)) for e in valid] == [(int(r.split(",")[0]), round(float(r.split(",")[3]), 3))
                                                            for r in rows]
    assert [e.step for e in valid] == [1, 2, 3]


def test_a_resume_of_a_run_logging_to_tensorboard_without_it_names_the_runs_setting(idx_dir, tmp_path, monkeypatch,
                                                                                    capsys):
    """`train --resume RUN` of a run begun with --tensorboard true, the package since gone: the
    error said "--tensorboard needs the tensorboard package", a flag its user had not given."""
    import sys

    run = tmp_path / "tb"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--latent-dim", "2", *TINY,
                 "--epochs", "1", "--figures", "false", "--tensorboard", "true"]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"pyro-vae: error: {run} logs to TensorBoard (tensorboard = true in its config.toml), but the tensorboard "
        "package is not installed: pip install 'pyro-vae[tensorboard]', or resume it with --tensorboard false.\n")
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress", "--tensorboard", "false"]) == 0


def test_a_figure_of_no_images_or_steps_is_refused_with_the_argument_named(tmp_path):
    """n=0 samples, an interpolation of 0 steps, a manifold of n=0, a grid of 0 columns divided by
    zero; an empty batch of images failed inside torch ("cannot reshape tensor of 0 elements",
    "expected a non-empty list of Tensors"). Each is now a ValueError naming the argument, and
    no file is written."""
    from pyro_vae import plots

    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 4, 4))
    x = torch.bernoulli(torch.full((6, 1, 4, 4), 0.3))
    out = tmp_path / "figure.png"
    refused = [
        (lambda: plots.plot_samples(model, out, n=0), "n must be a whole number of at least 1, not 0"),
        (lambda: plots.plot_samples(model, out, n=-3), "n must be a whole number of at least 1, not -3"),
        (lambda: plots.plot_reconstructions(model, guide, x[:0], out), "images must hold at least one image"),
        (lambda: plots.plot_latent(guide, x[:0], None, out), "images must hold at least one image"),
        (lambda: plots.plot_prior_check(guide, x, out, max_dims=0), "max_dims must be a whole number of at least 1"),
        (lambda: plots.plot_interpolation(model, guide, x[0], x[1], out, steps=1),
         "steps must be a whole number of at least 2, not 1"),
        (lambda: plots.plot_manifold(model, out, n=0), "n must be a whole number of at least 1, not 0"),
        (lambda: plots.plot_curves([], out), "the history holds no epochs"),
        (lambda: plots.image_grid(x, 0), "ncol must be a whole number of at least 1, not 0"),
        (lambda: plots.image_grid(x.flatten(1), 2), r"images must be \[N, C, H, W\] .*not of shape \(6, 16\)"),
        (lambda: interpolate_codes(torch.zeros(2), torch.ones(2), 0), "steps must be a whole number of at least 2"),
        (lambda: principal_components(torch.randn(5, 3), k=0), "k must be a whole number of at least 1, not 0"),
    ]
    for call, message in refused:
        with pytest.raises(ValueError, match=message):
            call()
    assert not out.exists()
    assert plots.plot_samples(model, out, n=4).is_file()  # the smallest counts still draw
    assert interpolate_codes(torch.zeros(2), torch.ones(2), 2).tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_figures_leave_a_model_in_training_mode_as_it_was_and_build_no_graph(tmp_path):
    """A conv model with batch normalisation in training mode (a loop of one's own never calls
    .eval()) drew its figures with batch statistics and every figure moved the running
    statistics, so drawing changed the model; plot_samples also built an autograd graph through
    the decoder (its no_grad had slipped onto sample_count). Each figure now draws in evaluation
    mode without autograd and hands the model and guide back as they came."""
    from pyro_vae.plots import (plot_interpolation, plot_latent, plot_manifold, plot_prior_check,
                                plot_reconstructions, plot_samples)

    model, guide = build_vae(ModelConfig(latent_dim=2, network="conv", conv_channels=[4], hidden_dims=[8],
                                         batch_norm=True), (1, 8, 8))
    x = torch.bernoulli(torch.full((6, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(0))
    state = {key: value.clone() for key, value in [*model.state_dict().items(), *guide.state_dict().items()]}
    seen = []  # (training, grad enabled) at every call of the decoder and encoder
    for module in (model.decoder, guide.encoder):
        module.register_forward_hook(lambda m, args, out: seen.append((m.training, torch.is_grad_enabled())))
    plot_samples(model, tmp_path / "s.png", n=4)
    plot_reconstructions(model, guide, x, tmp_path / "r.png")
    plot_latent(guide, x, None, tmp_path / "l.png")
    plot_manifold(model, tmp_path / "m.png", n=3)
    plot_interpolation(model, guide, x[0], x[1], tmp_path / "i.png")
    plot_prior_check(guide, x, tmp_path / "p.png")
    assert seen and set(seen) == {(False, False)}
    assert model.training and guide.training and all(m.training for m in [*model.modules(), *guide.modules()])
    after = dict([*model.state_dict().items(), *guide.state_dict().items()])
    assert all(torch.equal(state[key], after[key]) for key in state)  # running statistics untouched


def test_figures_and_fidelity_of_a_label_model_in_training_mode_draw_in_evaluation_mode(tmp_path):
    """plot_style_transfer (and plot_samples of a LabelModel, and the label-fidelity measurements)
    read the model through a LabelModel's closures, which the figures' evaluation mode did not
    see: a conditional model left in training mode drew with batch statistics and moved its
    batch-norm running statistics. They now draw in evaluation mode without autograd and hand
    the model and guide back as they came."""
    from pyro_vae.inference.fidelity import encode_all, label_model, prior_fidelity, style_grid_fidelity
    from pyro_vae.plots import plot_samples, plot_style_transfer

    model, guide = build_vae(ModelConfig(model="cvae", latent_dim=2, network="conv", conv_channels=[4],
                                         hidden_dims=[8], batch_norm=True), (1, 8, 8), num_classes=3)
    x = torch.bernoulli(torch.full((6, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(0))
    y = torch.arange(6) % 3
    state = {key: value.clone() for key, value in [*model.state_dict().items(), *guide.state_dict().items()]}
    seen = []  # (training, grad enabled) at every call of the decoder and encoder
    for module in (model.decoder, guide.encoder):
        module.register_forward_hook(lambda m, args, out: seen.append((m.training, torch.is_grad_enabled())))
    generator = label_model(model, guide)
    plot_style_transfer(generator, x, y, tmp_path / "style.png")
    plot_samples(generator, tmp_path / "s.png", n=3)
    judge = lambda images: torch.zeros(len(images), dtype=torch.long)  # noqa: E731
    style_grid_fidelity(generator, judge, x, y)
    prior_fidelity(generator, judge, per_class=2)
    encode_all(generator, x, y)
    assert seen and set(seen) == {(False, False)}
    assert all(m.training for m in [*model.modules(), *guide.modules()])
    after = dict([*model.state_dict().items(), *guide.state_dict().items()])
    assert all(torch.equal(state[key], after[key]) for key in state)  # running statistics untouched


def test_the_style_figure_of_a_model_without_a_label_names_every_model_with_one(run_2d, tmp_path, capsys):
    """It said "train with --model cvae" although M2 and the ADGM draw the style grid too."""
    out = tmp_path / "style.png"
    assert main(["plot", str(run_2d), "--kind", "style", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "needs a model with a label (--model cvae, m2, adgm or m1m2)" in err
    assert f"{run_2d} is a --model vae run" in err and not out.exists()


def test_the_latent_plot_gives_every_one_of_26_classes_its_own_colour(tmp_path, monkeypatch):
    """With more than 20 classes (EMNIST letters through --dataset idx) tab20's colours came
    round again: class 20 was drawn in class 0's colour, so the plot merged two classes."""
    from matplotlib.colors import to_hex

    from pyro_vae import plots

    torch.manual_seed(0)
    _, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 4, 4))
    x = torch.bernoulli(torch.full((52, 1, 4, 4), 0.3))
    labels = torch.arange(52) % 26
    drawn = {}
    scatter = plots.matplotlib.axes.Axes.scatter

    def recording_scatter(ax, xs, ys, *args, label=None, color=None, **kwargs):
        drawn[label] = to_hex(color)
        return scatter(ax, xs, ys, *args, label=label, color=color, **kwargs)

    monkeypatch.setattr(plots.matplotlib.axes.Axes, "scatter", recording_scatter)
    plots.plot_latent(guide, x, labels, tmp_path / "latent.png", class_names=tuple("abcdefghijklmnopqrstuvwxyz"))
    assert sorted(drawn) == list("abcdefghijklmnopqrstuvwxyz")
    assert len(set(drawn.values())) == 26
    assert plots.class_colours(10) == [plots.matplotlib.colormaps["tab10"](c) for c in range(10)]


def test_the_m2_curves_name_the_objective_given_and_call_it_no_bound(monkeypatch, tmp_path):
    """M2's training number adds alpha x log q(y | x), so it bounds nothing: the left panel was
    titled "Training bound" and the objective passed in (the run's own name for it) was ignored."""
    from pyro_vae import plots
    from pyro_vae.inference.semisupervised import objective_name

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    history = [{"epoch": e, "train_objective": -5000.0 + 100 * e, "valid_accuracy": 0.2 + 0.1 * e}
               for e in (1, 2, 3)]
    name = objective_name(20000.0, 4.0)
    plots.plot_curves(history, tmp_path / "curves.png", name)
    (fig,) = drawn
    left = fig.axes[0]
    assert "bound" not in left.get_title()
    (legend_text,) = left.get_legend().get_texts()
    assert legend_text.get_text().replace("\n", " ") == f"train: {name}"


def test_the_curves_of_a_conditional_elbo_name_what_it_bounds(monkeypatch, tmp_path):
    """A CVAE's ELBOs bound log p(x | y): the validation curve was "validation ELBO", as if of log p(x)."""
    from pyro_vae import plots
    from pyro_vae.inference.kinds import GIVEN_LABEL

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    history = [{"epoch": e, "train_objective": -250.0 + e, "valid_elbo": -240.0 + e, "valid_reconstruction": -230.0,
                "valid_kl": 10.0} for e in (1, 2)]
    plots.plot_curves(history, tmp_path / "c.png", "ELBO of log p(x | y)", GIVEN_LABEL)
    plots.plot_curves(history, tmp_path / "c.png", "ELBO")
    legends = [[t.get_text().replace("\n", " ") for t in fig.axes[0].get_legend().get_texts()] for fig in drawn]
    assert legends == [["train: ELBO of log p(x | y)", "validation ELBO of log p(x | y)"],
                       ["train: ELBO", "validation ELBO"]]
    assert drawn[0].axes[0].get_title() == "Training objective and validation ELBO of log p(x | y)"
    # the reconstruction term of the CVAE's decoder reads y (it was "-E[log p(x|z)]" for every model)
    parts = [[t.get_text() for t in fig.axes[1].get_legend().get_texts()] for fig in drawn]
    assert parts == [["-E[log p(x|z,y)] (reconstruction)"], ["-E[log p(x|z)] (reconstruction)"]]


def test_the_curves_of_quadrant_completion_name_its_reconstruction_term(monkeypatch, tmp_path):
    """Quadrant completion's quantity names its given quadrants ("log p(x_m | x_g), x_g the top-left
    quadrant"), so the lookup of its reconstruction term missed and its curves (curves.png, plot
    --kind curves) called it "-E[log p(x|z)]", a term of every pixel, where it scores the missing
    ones given x_g."""
    from pyro_vae import plots
    from pyro_vae.inference.kinds import quantity

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    history = [{"epoch": e, "train_objective": -250.0 + e, "valid_elbo": -240.0 + e, "valid_reconstruction": -230.0,
                "valid_kl": 10.0} for e in (1, 2)]
    for given in (1, 3):
        plots.plot_curves(history, tmp_path / "c.png", "ELBO of log p(x_m | x_g)", quantity("quadrant", given))
    parts = [[t.get_text() for t in fig.axes[1].get_legend().get_texts()] for fig in drawn]
    assert parts == [["-E[log p(x_m|z,x_g)] (reconstruction)"]] * 2
    assert drawn[0].axes[0].get_title() == "Training objective and validation ELBO of log p(x_m | x_g)"


def test_the_curves_of_a_fit_result_name_its_objective(monkeypatch, tmp_path):
    """plot_curves(fit(...), path) failed with "'FitResult' object is not iterable"."""
    from pyro_vae import FitResult, plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    history = [{"epoch": e, "train_objective": -250.0 + e, "valid_elbo": -240.0 + e, "valid_reconstruction": -230.0,
                "valid_kl": 10.0} for e in (1, 2)]
    result = FitResult(history, best_epoch=2, best_valid_criterion=-238.0, train_objective_name="IWAE bound K=5")
    plots.plot_curves(result, tmp_path / "c.png")
    plots.plot_curves(result, tmp_path / "c.png", "my objective")
    legends = [[t.get_text().replace("\n", " ") for t in fig.axes[0].get_legend().get_texts()] for fig in drawn]
    assert legends == [["train: IWAE bound K=5", "validation ELBO"], ["train: my objective", "validation ELBO"]]
    assert list(drawn[0].axes[0].lines[0].get_ydata()) == [-249.0, -248.0]


@pytest.mark.parametrize("semi_supervised", [False, True])
def test_the_curves_have_ticks_at_whole_epochs_only(monkeypatch, tmp_path, semi_supervised):
    """Two epochs were drawn with ticks at 1.2, 1.4, 1.6 and 1.8: epochs that do not exist."""
    from pyro_vae import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    extra = {"valid_accuracy": 0.5} if semi_supervised else {"valid_elbo": -240.0, "valid_reconstruction": -230.0,
                                                            "valid_kl": 10.0}
    plots.plot_curves([{"epoch": e, "train_objective": -250.0 + e, **extra} for e in (1, 2)], tmp_path / "c.png")
    (fig,) = drawn
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_the_validation_curve_draws_its_recorded_standard_error(monkeypatch, tmp_path):
    """metrics.csv records valid_elbo_stderr every epoch, and curves.png drew the validation
    ELBO as a bare line: no uncertainty, so two epochs 0.3 nats apart looked like progress
    under a standard error of 9. It is now drawn ± that standard error, and the legend says so."""
    from pyro_vae import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    history = [{"epoch": e, "train_objective": -250.0 + e, "valid_elbo": -240.0 + e, "valid_reconstruction": -230.0,
                "valid_kl": 10.0, "valid_elbo_stderr": se} for e, se in ((1, 0.5), (2, 0.25))]
    plots.plot_curves(history, tmp_path / "c.png", "ELBO")
    left = drawn[0].axes[0]
    (container,) = left.containers
    half = [float(seg[1][1] - seg[0][1]) / 2 for seg in container.lines[2][0].get_segments()]
    assert half == pytest.approx([0.5, 0.25])
    legend = [t.get_text().replace("\n", " ") for t in left.get_legend().get_texts()]
    assert legend == ["train: ELBO", "validation ELBO ± s.e. over the validation images"]


@pytest.mark.parametrize("semi_supervised", [False, True])
def test_the_curves_of_one_epoch_draw_its_points_at_a_whole_epoch(monkeypatch, tmp_path, semi_supervised):
    """A one-epoch run's curves.png was empty: each curve is one point, which a line without a
    marker does not draw, and the epoch axis had ticks at 0.945, 0.96, ... and none at 1."""
    from pyro_vae import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    extra = {"valid_accuracy": 0.5} if semi_supervised else {"valid_elbo": -240.0, "valid_reconstruction": -230.0,
                                                            "valid_kl": 10.0}
    plots.plot_curves([{"epoch": 1, "train_objective": -250.0, **extra}], tmp_path / "c.png")
    (fig,) = drawn
    lines = [line for ax in fig.axes for line in ax.lines]
    assert len(lines) == (2 if semi_supervised else 4)
    assert all(line.get_marker() not in (None, "None", "", " ") for line in lines)
    for ax in fig.axes:
        low, high = ax.get_xlim()
        assert [t for t in ax.get_xticks() if low <= t <= high] == [1.0]


@pytest.mark.parametrize("num_classes,title", [(0, "reconstructions (decoder mean at the code)"),
                                               (10, "reconstructions (decoder mean, label given)")])
def test_a_conditional_models_reconstructions_say_the_label_was_given(monkeypatch, tmp_path, num_classes, title):
    """M2's reconstructions decode with each test image's own label, not one q(y | x) infers;
    the title said only "decoder mean at the code". It stays inside the figure of one row."""
    from types import SimpleNamespace

    from pyro_vae import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    images = torch.rand(8, 1, 28, 28)
    model = SimpleNamespace(num_classes=num_classes, decode_mean=lambda z, *y: images)
    guide = SimpleNamespace(encode=lambda x, *y: (torch.zeros(len(x), 2), torch.ones(len(x), 2)))
    labels = torch.zeros(8, dtype=torch.long) if num_classes else None  # refused where there is no label
    plots.plot_reconstructions(model, guide, images, tmp_path / "r.png", labels=labels)
    (fig,) = drawn
    right = fig.axes[1].title
    assert right.get_text() == title
    fig.canvas.draw()
    extent = right.get_window_extent(fig.canvas.get_renderer())
    assert fig.bbox.x0 <= extent.x0 and extent.x1 <= fig.bbox.x1


def test_the_interpolation_names_its_two_images(run_2d, tmp_path, monkeypatch):
    """The title said "two test images" whichever they were (--image-a/--image-b find a file in
    any split) and not which: it names the test image numbers, or the files given."""
    from pyro_vae import plots

    titles = []
    draw = plots._rows_figure
    monkeypatch.setattr(plots, "_rows_figure", lambda rows, path, title, xlabel="", **kw: titles.append(
        (title, xlabel)) or draw(rows, path, title, xlabel, **kw))
    assert main(["plot", str(run_2d), "--kind", "interpolate", "--index-a", "3", "--index-b", "5", "-o",
                 str(tmp_path / "i.png")]) == 0
    assert titles == [("Interpolation between test image 3 and test image 5 (codes = encoder means)",
                       "t from 0 (test image 3) to 1 (test image 5)")]
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 28, 28))
    plots.plot_interpolation(model, guide, torch.bernoulli(torch.rand(1, 28, 28)), torch.bernoulli(torch.rand(1, 28, 28)),
                             tmp_path / "j.png",
                             names=("000001.jpg", "000002.jpg"))
    assert titles[-1][0] == "Interpolation between 000001.jpg and 000002.jpg (codes = encoder means)"


def test_what_a_figure_cannot_read_or_would_ignore_is_refused_in_a_sentence(tmp_path):
    """A Python-API audit: plot_reconstructions of NaN images drew them; of 32 x 32 images (or
    plot_interpolation's) failed with torch's "mat1 and mat2 shapes cannot be multiplied"; and
    plot_samples(label=3) or plot_reconstructions(labels=...) of an unconditional VAE ignored
    the label without a word."""
    from pyro_vae import plots
    from pyro_vae.build import build_vae
    from pyro_vae.config import ModelConfig
    from pyro_vae.errors import PyroVAEError

    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 28, 28))
    out = tmp_path / "x.png"
    for call, message in (
            (lambda: plots.plot_reconstructions(model, guide, torch.full((4, 1, 28, 28), float("nan")), out), "NaN"),
            (lambda: plots.plot_reconstructions(model, guide, torch.rand(4, 1, 32, 32), out),
             r"have shape \(1, 32, 32\) but the model expects \(1, 28, 28\)"),
            (lambda: plots.plot_interpolation(model, guide, torch.rand(1, 32, 32), torch.rand(1, 32, 32), out),
             "the two images have shape"),
            (lambda: plots.plot_samples(model, out, n=4, label=3), "label=3 has no effect"),
            (lambda: plots.plot_reconstructions(model, guide, torch.rand(4, 1, 28, 28), out,
                                                labels=torch.zeros(4, dtype=torch.long)), "labels has no effect")):
        with pytest.raises(PyroVAEError, match=message):
            call()
    assert not out.exists()
    with pytest.raises(PyroVAEError, match="num_classes=10 has no effect with model 'vae'"):
        build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 28, 28), num_classes=10)


def test_codes_labels_and_vectors_of_mismatched_lengths_get_a_sentence(tmp_path):
    """plot_latent with 5 labels for 16 images, attribute_vector with a mask of another length,
    and interpolate_codes / apply_attribute of codes of different sizes failed deep in torch."""
    from pyro_vae import plots
    from pyro_vae.build import build_vae
    from pyro_vae.config import ModelConfig

    _, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 28, 28))
    images = torch.rand(16, 1, 28, 28)
    for call, message in (
            (lambda: plots.plot_latent(guide, images, torch.zeros(5, dtype=torch.long), tmp_path / "l.png"),
             "labels has 5 entries for 16 images"),
            (lambda: plots.attribute_vector(torch.zeros(5, 2), torch.tensor([1, 0, 1])),
             "has_attribute has 3 entries for 5 codes"),
            (lambda: plots.interpolate_codes(torch.zeros(2), torch.ones(3), 3), "shapes \\(2,\\) and \\(3,\\)"),
            (lambda: plots.apply_attribute(torch.zeros(2), torch.zeros(3), [1, 2]), "the code has shape")):
        with pytest.raises(ValueError, match=message):
            call()
    assert not (tmp_path / "l.png").exists()


def test_a_conditional_models_labels_missing_short_or_out_of_range_get_a_sentence(tmp_path):
    """A Python-API audit of the label figures: plot_samples(label=12) of a 10-class CVAE failed in
    torch's one_hot, label=-1 with "tuple index out of range", label=2.5 drew class 2 titled 2.5;
    plot_reconstructions and plot_style_transfer without labels, with 3 labels for 4 images or a
    label 10, failed in torch ("one_hot(): argument 'input' must be Tensor", "broadcast")."""
    from pyro_vae import plots
    from pyro_vae.inference.fidelity import label_model

    model, guide = build_vae(ModelConfig(model="cvae", latent_dim=2, hidden_dims=[8]), (1, 28, 28), num_classes=10)
    generator = label_model(model, guide)
    out = tmp_path / "x.png"
    x = torch.bernoulli(torch.rand(4, 1, 28, 28))  # 0/1 pixels, as the Bernoulli likelihood reads
    long = dict(dtype=torch.long)
    for call, message in (
            (lambda: plots.plot_samples(model, out, n=4, label=12), "label must be a class number from 0 to 9, not 12"),
            (lambda: plots.plot_samples(model, out, n=4, label=-1), "not -1"),
            (lambda: plots.plot_samples(model, out, n=4, label=2.5), "not 2.5"),
            (lambda: plots.plot_reconstructions(model, guide, x, out), "give labels, one class number"),
            (lambda: plots.plot_reconstructions(model, guide, x, out, labels=torch.zeros(3, **long)),
             "labels has 3 entries for 4 images"),
            (lambda: plots.plot_reconstructions(model, guide, x, out, labels=torch.full((4,), 10)),
             "these run from 10 to 10"),
            (lambda: plots.plot_style_transfer(generator, x, None, out), "give labels"),
            (lambda: plots.plot_style_transfer(generator, x, torch.zeros(3, **long), out), "3 entries for 4"),
            (lambda: plots.plot_style_transfer(generator, x, torch.zeros(4), out), "whole class numbers")):
        with pytest.raises(ValueError, match=message):
            call()
    assert not out.exists()
    plots.plot_samples(model, out, n=4, label=np.int64(9))  # a NumPy class number is one
    assert out.exists()


def test_a_figure_given_a_model_it_does_not_draw_names_the_figures_that_do(tmp_path):
    """A Python-API audit: the figures of unconditional codes given a CVAE failed with
    "encode() missing 1 required positional argument: 'y'" (plot_manifold with decode_mean's);
    plot_samples and plot_reconstructions of a quadrant model, plot_completions of a VAE and
    plot_style_transfer of a VAE with AttributeErrors. The CLI refuses these; the functions did not."""
    from pyro_vae import plots
    from pyro_vae.errors import ConfigError

    cvae, cvae_guide = build_vae(ModelConfig(model="cvae", latent_dim=2, hidden_dims=[8]), (1, 28, 28),
                                 num_classes=10)
    quadrant, quadrant_guide = build_vae(ModelConfig(model="quadrant", latent_dim=2, hidden_dims=[8]), (1, 28, 28))
    vae, _ = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 28, 28))
    out = tmp_path / "x.png"
    x = torch.rand(4, 1, 28, 28)
    mask = torch.tensor([True, False, True, False])
    unlabelled = "without a class label, and this model or guide has one"
    for call, message in (
            (lambda: plots.plot_latent(cvae_guide, x, None, out), unlabelled),
            (lambda: plots.plot_arithmetic(cvae, cvae_guide, x, mask, x[:2], out, "a"), unlabelled),
            (lambda: plots.plot_interpolation(cvae, cvae_guide, x[0], x[1], out), unlabelled),
            (lambda: plots.plot_prior_check(cvae_guide, x, out), unlabelled),
            (lambda: plots.plot_manifold(cvae, out, n=3), unlabelled),
            (lambda: plots.plot_compare([("a", cvae, cvae_guide)], x, None, out, samples=4), unlabelled),
            (lambda: plots.plot_samples(quadrant, out, n=4), "not drawn for quadrant completion"),
            (lambda: plots.plot_reconstructions(quadrant, quadrant_guide, x, out), "not drawn for quadrant"),
            (lambda: plots.plot_completions(vae, x, out), "this model completes nothing"),
            (lambda: plots.plot_style_transfer(vae, x, torch.zeros(4, dtype=torch.long), out),
             "every class label, and this model has none")):
        with pytest.raises(ConfigError, match=message):
            call()
    assert not out.exists()


@pytest.mark.parametrize("settings", [dict(prior="vamp", pseudo_inputs=5), dict(prior="mog", prior_components=3),
                                      dict(model="hvae", top_latent_dim=2, top_hidden_dims=[8])])
def test_the_manifold_of_a_prior_other_than_n01_is_refused_not_titled_the_priors_quantiles(tmp_path, settings):
    """plot_manifold of a VampPrior, mixture or two-layer model decoded N(0, I)'s quantiles under the
    title "decoded prior quantiles 5%..95%" (the CLI refuses these runs; the function drew them)."""
    from pyro_vae import plots
    from pyro_vae.errors import ConfigError

    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8], **settings), (1, 28, 28))
    with pytest.raises(ConfigError, match="decodes the quantiles of N\\(0, I\\) as the prior's"):
        plots.plot_manifold(model, tmp_path / "m.png", n=3)
    assert not (tmp_path / "m.png").exists()
    codes = guide.encode(torch.rand(20, 1, 28, 28))[0]
    plots.plot_manifold(model, tmp_path / "m.png", n=3, codes=codes)  # a grid over its codes is drawn
    assert (tmp_path / "m.png").exists()


def test_the_prior_check_of_a_two_layer_guide_is_refused(tmp_path):
    """plot_prior_check(two-layer guide) compared q(z1 | x) with N(0, 1), though z1's prior is
    E_p(z2)[p(z1 | z2)] (the CLI refused such runs; the function drew them)."""
    from pyro_vae import plots
    from pyro_vae.errors import ConfigError

    _, guide = build_vae(ModelConfig(model="hvae", latent_dim=2, hidden_dims=[8], top_latent_dim=2,
                                     top_hidden_dims=[8]), (1, 28, 28))
    with pytest.raises(ConfigError, match="two-layer guide's code z1 has the prior"):
        plots.plot_prior_check(guide, torch.rand(20, 1, 28, 28), tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()
    _, vae_guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 28, 28))
    plots.plot_prior_check(vae_guide, torch.rand(20, 1, 28, 28), tmp_path / "p.png")  # a one-layer guide is drawn
    assert (tmp_path / "p.png").exists()


@pytest.mark.parametrize("name, write", [
    ("labels.txt", lambda path: np.savetxt(path, [[1, 0, 0]] * 5000, fmt="%d")),  # three columns: read row by row
    ("labels.npy", lambda path: np.save(path, np.array(["1", "0"] * 2500))),  # strings: a TypeError traceback
])
def test_an_attribute_file_that_is_not_one_label_per_image_is_refused(run_2d, tmp_path, capsys, name, write):
    path = tmp_path / name
    write(path)
    assert main(["plot", str(run_2d), "--kind", "arithmetic", "--attribute-file", str(path), "--limit", "100",
                 "-o", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert "must hold one 0 or 1 per test image, as one column or row of numbers" in err and "Traceback" not in err
    assert not (tmp_path / "a.png").exists()


def test_the_latent_figure_names_the_images_it_is_given(tmp_path, monkeypatch):
    """plot_latent titled any images "Latent codes of N test images" (a Python user's training or
    own images included); it now says "images", or what the caller names them (the CLI: test images)."""
    from pyro_vae import plots

    torch.manual_seed(0)
    _, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 4, 4))
    x = torch.bernoulli(torch.full((12, 1, 4, 4), 0.3))
    titles = []
    set_title = plots.matplotlib.axes.Axes.set_title
    monkeypatch.setattr(plots.matplotlib.axes.Axes, "set_title",
                        lambda ax, label, *a, **k: (titles.append(label), set_title(ax, label, *a, **k))[1])
    plots.plot_latent(guide, x, None, tmp_path / "a.png")
    plots.plot_latent(guide, x, None, tmp_path / "b.png", what="training images")
    assert titles == ["Latent codes of 12 images", "Latent codes of 12 training images"]


def test_figures_of_a_bernoulli_model_refuse_grey_level_images_as_fit_does(tmp_path):
    """plot_reconstructions (and plot_interpolation) drew grey-level images through a Bernoulli
    model without a word, where fit and importance_log_likelihood refuse them: they now refuse them
    with the same sentence, before anything is drawn."""
    from pyro_vae import plots
    from pyro_vae.errors import DataError

    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 4, 4))
    grey = torch.rand(6, 1, 4, 4)
    out = tmp_path / "figure.png"
    says = r"^the tensor of images has grey-level pixels but the Bernoulli likelihood needs 0/1 pixels; binarize them"
    with pytest.raises(DataError, match=says):
        plots.plot_reconstructions(model, guide, grey, out)
    with pytest.raises(DataError, match="^the tensor of two images has grey-level pixels"):
        plots.plot_interpolation(model, guide, grey[0], grey[1], out)
    assert not out.exists()
    assert plots.plot_reconstructions(model, guide, torch.bernoulli(grey), out) == out
    gaussian, encoder = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8], likelihood="gaussian"), (1, 4, 4))
    assert plots.plot_reconstructions(gaussian, encoder, grey, out) == out  # grey levels are its support
