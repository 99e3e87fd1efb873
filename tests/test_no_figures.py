"""`pyro-vae train --figures false`: the job draws no figure and never imports matplotlib,
says so on the console, and keeps every other output; `--figure-every` with it is refused."""

import json
import subprocess
import sys

from pyro_vae.cli import main

TINY = ["--dataset", "idx", "--latent-dim", "4", "--hidden-dims", "32", "--epochs", "1",
        "--batch-size", "64", "--no-progress"]


def test_train_without_figures_imports_no_matplotlib_and_says_so(idx_dir, tmp_path):
    run = tmp_path / "run"
    code = ("import sys; from pyro_vae.cli import main; "
            f"code = main(['train', '--data-dir', r'{idx_dir}', '--run-dir', r'{run}', '--figures', 'false', "
            + ", ".join(repr(a) for a in TINY) + "]); "
            "print('matplotlib loaded:', 'matplotlib' in sys.modules); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "matplotlib loaded: False" in done.stdout
    assert "figures: none drawn (--figures false)" in done.stdout and "figure: " not in done.stdout
    assert not list(run.glob("*.png"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["figures"] == [] and "test_elbo" in summary  # everything else is still written
    assert (run / "checkpoint_best.pt").exists() and (run / "metrics.csv").exists()
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
