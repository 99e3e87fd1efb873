"""`import pyro_vae` changes no global state: not matplotlib's backend (a notebook keeps its
inline figures), not the warnings filters, not torch's settings, and prints nothing."""

import json
import subprocess
import sys

PROBE = r"""
import json, sys, warnings
import matplotlib
import torch
matplotlib.use("svg")     # a backend the user chose (not the Agg a library might force)
def state():
    return {
        "backend": matplotlib.get_backend(),
        "pyplot_loaded": "matplotlib.pyplot" in sys.modules,
        "filters": [repr(f) for f in warnings.filters],
        "threads": torch.get_num_threads(),
        "dtype": str(torch.get_default_dtype()),
        "grad": torch.is_grad_enabled(),
        "denormal_flush": (torch.tensor([1e-39]) * 1.0).item() == 0.0,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "rcparams": dict(matplotlib.rcParams),
    }
before = state()
import pyro_vae
after = state()
print(json.dumps({"before": before, "after": after}, default=str))
"""


def test_import_changes_no_global_state_and_is_silent():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # nothing printed by the import
    states = json.loads(lines[0])
    assert states["before"]["backend"] == "svg"
    for key in states["before"]:
        assert states["after"][key] == states["before"][key], key


def test_figures_are_drawn_without_pyplot(tmp_path):
    """The plotting functions draw on figures of their own: pyplot is never imported, so no
    figure is left open in a user's session."""
    code = (
        "import sys, torch; from pyro_vae.plots import plot_curves; "
        f"plot_curves([{{'epoch': 1, 'train_objective': -2.0, 'valid_elbo': -1.5, 'valid_reconstruction': -1.0, "
        f"'valid_kl': 0.5}}], r'{tmp_path / 'c.png'}'); "
        "print('matplotlib.pyplot' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
