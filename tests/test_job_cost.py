"""What a short training job pays outside training (issue #16, sixth pass): the VAE's curves
figure is drawn with fixed margins instead of a constrained layout (one draw fewer), and
every label, title and tick label still lies inside the figure, clear of the other panel.
Seventh pass: the samples and reconstructions figures of every train run too, at the places
the constrained layout gave them (the same pixels)."""

from pathlib import Path

import matplotlib.image
import pytest
import torch

from pyro_vae import plots


@pytest.mark.parametrize("epochs,objective,start,rise", [
    (1, None, -250.0, 90.0), (3, None, -250.0, 90.0), (120, None, -250.0, 90.0),
    (3, "IWAE bound K=5 with the KL weight warmed up to beta=1 over 10 epochs", -250.0, 90.0),
    # tick labels of seven characters ("-12345.5", an 8-bit likelihood's ELBO late in training) cut the
    # left panel's axis label off at the figure's edge
    (3, None, -12345.6, 2.0), (3, None, -1234.5, 3.0)])
def test_curves_figure_has_fixed_margins_and_nothing_outside_it(monkeypatch, tmp_path, epochs, objective, start,
                                                                rise):
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or Path(path))
    history = [{"epoch": e, "train_objective": start + rise * e / epochs, "valid_elbo": start + 10 + rise * e / epochs,
                "valid_reconstruction": start + 20 + rise * e / epochs, "valid_kl": 5.0 + 20 * e / epochs}
               for e in range(1, epochs + 1)]
    plots.plot_curves(history, tmp_path / "curves.png", objective)  # the legend names the objective
    (fig,) = drawn
    assert fig.get_layout_engine() is None  # no constrained layout: no extra draw to measure the texts
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    left, right = fig.axes[0], fig.axes[1]
    for ax in fig.axes:  # each panel with all it draws: title, axis labels, tick labels, legend
        extent = ax.get_tightbbox(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0 and extent.y1 <= box.y1
    # The right panel's label (left of it) clears the left panel's area, tick labels included.
    left_edge = right.yaxis.label.get_window_extent(renderer).x0
    assert left.get_tightbbox(renderer).x1 < left_edge


class _GridModel:
    """Decodes every code to the given images (``plot_samples`` asks only for these two)."""

    def __init__(self, images):
        self.images = images

    def sample_prior(self, n):
        return torch.zeros(n, 2)

    def decode_mean(self, codes):
        return self.images[: len(codes)]


def _pixels(path):
    return matplotlib.image.imread(path)


def _constrained_twin(monkeypatch, draw):
    """What ``draw`` writes when every figure it makes has the constrained layout (as before the
    seventh pass), without the fixed margins."""
    monkeypatch.setattr(plots, "_margins_in_inches", lambda fig, **margins: None)
    real = plots._subplots
    monkeypatch.setattr(plots, "_subplots", lambda *a, **options: real(*a, **{"layout": "constrained", **options}))
    draw()
    monkeypatch.undo()


def test_train_runs_sample_and_reconstruction_figures_are_the_constrained_layouts_pixel_for_pixel(monkeypatch, tmp_path):
    torch.manual_seed(0)
    images = torch.rand(64, 1, 28, 28)
    ours = [plots.plot_samples(_GridModel(images), tmp_path / "samples.png", n=64),
            plots.plot_reconstructions(_GridModel(images), _Encoder(), images[:32], tmp_path / "recon.png")]
    _constrained_twin(monkeypatch, lambda: (
        plots.plot_samples(_GridModel(images), tmp_path / "samples-c.png", n=64),
        plots.plot_reconstructions(_GridModel(images), _Encoder(), images[:32], tmp_path / "recon-c.png")))
    for path in ours:
        before = _pixels(path.with_name(path.stem + "-c.png"))
        assert before.shape == _pixels(path).shape and (before == _pixels(path)).all(), path.name


@pytest.mark.parametrize("n", [2, 5, 10, 64])
def test_a_samples_figure_of_any_size_keeps_its_title_inside_the_figure_and_clear_of_the_grid(monkeypatch, tmp_path, n):
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or Path(path))
    plots.plot_samples(_GridModel(torch.rand(n, 1, 28, 28)), tmp_path / "s.png", n=n)
    (fig,) = drawn
    assert fig.get_layout_engine() is None
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    title = ax.title.get_window_extent(renderer)
    grid = ax.get_window_extent(renderer)
    assert grid.y1 <= title.y0 and title.y1 <= fig.bbox.y1 and fig.bbox.x0 <= title.x0 and title.x1 <= fig.bbox.x1
    assert fig.bbox.y0 < grid.y0 and fig.bbox.x0 < grid.x0 and grid.x1 < fig.bbox.x1


class _Encoder:
    def encode(self, images):
        return images, None


def test_a_callers_title_keeps_the_constrained_layout(monkeypatch, tmp_path):
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or Path(path))
    images = torch.rand(8, 1, 28, 28)
    plots.plot_samples(_GridModel(images), tmp_path / "s.png", n=8, title="two\nlines")
    plots.plot_reconstructions(_GridModel(images), _Encoder(), images, tmp_path / "r.png", title="a suptitle")
    plots.plot_samples(_GridModel(images), tmp_path / "s.png", n=8)
    assert [fig.get_layout_engine() is not None for fig in drawn] == [True, True, False]
