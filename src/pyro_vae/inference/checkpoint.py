"""Checkpoints: one file of tensors and plain values, written atomically, loaded safely.

A checkpoint holds the model's and guide's parameters, the optimizer's state, the
resolved configuration, the epoch, the training history and every RNG state that the
run draws from, so that ``--resume`` continues bit for bit on CPU. It is written to a
temporary file in the same directory, flushed to disk, then renamed over the old one
(``os.replace`` is atomic), so a crash mid-write leaves the previous checkpoint whole.
It is read with ``torch.load(weights_only=True)``, which refuses pickled code.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from pyro_vae.errors import CheckpointError

LAST = "checkpoint_last.pt"
BEST = "checkpoint_best.pt"


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it over
    ``path``. On any error the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically."""
    try:
        atomic_write_bytes(path, lambda handle: torch.save(state, handle))
    except OSError as err:
        raise CheckpointError(
            f"could not write checkpoint {path} ({err.strerror or err}); free disk space or "
            "make the run directory writable; the previous checkpoint is unchanged."
        ) from err


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely: tensors and plain values only, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; is this a pyro-vae run directory?")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is damaged
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt (not a torch zip archive).")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain values, so it was "
            "refused (it could run code); only load checkpoints written by pyro-vae."
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({err}).") from err
