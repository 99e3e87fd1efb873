"""What a short training job pays outside training (issue #16, sixth pass): the VAE's curves
figure is drawn with fixed margins instead of a constrained layout (one draw fewer), and
every label, title and tick label still lies inside the figure, clear of the other panel."""

from pathlib import Path

import pytest

from pyro_vae import plots


@pytest.mark.parametrize("epochs", [1, 3, 120])
def test_curves_figure_has_fixed_margins_and_nothing_outside_it(monkeypatch, tmp_path, epochs):
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or Path(path))
    history = [{"epoch": e, "train_elbo": -250.0 + 90 * e / epochs, "valid_elbo": -240.0 + 85 * e / epochs,
                "valid_reconstruction": -230.0 + 80 * e / epochs, "valid_kl": 5.0 + 20 * e / epochs}
               for e in range(1, epochs + 1)]
    plots.plot_curves(history, tmp_path / "curves.png")
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
