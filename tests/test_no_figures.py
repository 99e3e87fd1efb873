"""`pyro-vae train --figures false`: the job draws no figure and never imports matplotlib,
says so on the console, and keeps every other output; `--figure-every` with it is refused."""

import json
import sys

from pyro_vae.cli import main

TINY = ["--dataset", "idx", "--latent-dim", "4", "--hidden-dims", "32", "--epochs", "1",
        "--batch-size", "64", "--no-progress"]


class _NoMatplotlib:
    """A meta-path finder that refuses to import matplotlib."""

    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"{name} was imported by a job that asked for no figures")
        return None


def test_train_without_figures_imports_no_matplotlib_and_says_so(idx_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith(("matplotlib.", "pyro_vae.plots"))]:
        monkeypatch.delitem(sys.modules, name)  # put back when the test ends
    monkeypatch.setattr(sys, "meta_path", [_NoMatplotlib(), *sys.meta_path])
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--figures", "false", *TINY]) == 0
    out = capsys.readouterr().out
    assert "figures: none drawn (--figures false)" in out and "figure: " not in out
    assert not list(run.glob("*.png"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["figures"] == [] and "test_elbo" in summary  # everything else is still written
    assert (run / "checkpoint_best.pt").exists() and (run / "metrics.csv").exists()
    monkeypatch.undo()
    # The figures can be drawn afterwards from the run directory.
    assert main(["plot", str(run), "--kind", "curves", "-o", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_every_without_figures_is_refused(idx_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--figures", "false",
                 "--figure-every", "1", *TINY]) == 2
    err = capsys.readouterr().err
    assert "--figure-every 1 has no effect with --figures false" in err and len(err.strip().splitlines()) == 1
    assert not run.exists()


def test_the_hint_names_only_figures_the_model_draws(idx_dir, tmp_path, capsys):
    """A quadrant-completion run draws completions, never samples or reconstructions (refused
    for it): the console's hint names what `plot` will draw, and `plot --kind completions` of
    a VAE says which model it is for."""
    run = tmp_path / "quad"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--figures", "false",
                 "--model", "quadrant", *TINY]) == 0
    out = capsys.readouterr().out
    assert f"`pyro-vae plot {run} --kind curves -o curves.png` (or completions) draws them" in out, out
    assert main(["plot", str(run), "--kind", "completions", "-o", str(tmp_path / "c.png")]) == 0
    vae = tmp_path / "vae"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(vae), "--figures", "false", *TINY]) == 0
    assert "(or samples, reconstructions) draws them" in capsys.readouterr().out
    assert main(["plot", str(vae), "--kind", "completions", "-o", str(tmp_path / "v.png")]) == 2
    err = capsys.readouterr().err
    assert f"the 'completions' figure is for --model quadrant, and {vae} is a --model vae run; choose another " \
           "--kind, e.g. samples." in err, err
