"""Run directories written by hand, as compare and the sweep figure read them (no training)."""

from __future__ import annotations

from pathlib import Path

from pyro_vae.config import Config
from pyro_vae.inference.checkpoint import LAST


def finished_run_dir(run: Path, config: Config) -> Path:
    """``run`` made with ``config.toml`` (``config``), an empty last checkpoint and a one-epoch
    ``metrics.csv``: what marks a run directory; its summary.json is the caller's."""
    run.mkdir()
    (run / "config.toml").write_text(config.validate().dumps())
    (run / LAST).write_bytes(b"")
    (run / "metrics.csv").write_text("epoch,valid_elbo\n1,-101.0\n")
    return run
