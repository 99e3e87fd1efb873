"""Default names of run directories: ``runs/<dataset>-<model>-<likelihood>-<timestamp>``.

A new run without ``--run-dir`` always gets a fresh directory, so an unrelated run that
already exists never stops it; two runs started in the same second get ``-2``, ``-3``...
"""

from __future__ import annotations

import time
from pathlib import Path

from pyro_vae.config import Config


def default_run_dir(config: Config, root: Path | str = "runs", now: float | None = None) -> Path:
    """A directory under ``root`` that does not exist yet, named after the run's data set,
    model and likelihood and the local time (``20261123-073000``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    base = f"{config.data.dataset}-{config.model.model}-{config.model.likelihood}-{stamp}"
    candidate, counter = Path(root) / base, 1
    while candidate.exists():
        counter += 1
        candidate = Path(root) / f"{base}-{counter}"
    return candidate
