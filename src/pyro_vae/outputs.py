"""Where a command writes a file: one rule for every command's ``-o`` (and ``--figure``).

A missing folder is created, with its parents, when the file is written (``mkdir -p``), as
``train --run-dir`` and ``sweep`` create theirs: every command treats a path the same way.
What can never be written is refused before anything is computed, in one sentence
(:func:`check_output`): a path that is a directory, a folder on the path that is a file,
or a nearest existing folder that is not writable. The folder itself is made only when the
file is written (:func:`make_folder`), so a command refused or stopped before then leaves
no empty folder behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyro_vae.errors import PyroVAEError, WriteError


def check_output(path: Path, option: str | None = "-o") -> None:
    """Refuse an output ``path`` that could not be written (:class:`PyroVAEError`), naming
    ``option`` (the flag that gave it; None: a default path in a run directory)."""
    path = Path(path)
    name = f"{option} {path}" if option else f"the output {path}"
    fix = f"give {option} another path" if option else "make it writable"
    if path.is_dir():
        raise PyroVAEError(f"{name} is a directory; {fix} (a file name).")
    folder = path.parent
    while not folder.exists():  # the nearest folder that exists: the missing ones are made in it
        folder = folder.parent
    if not folder.is_dir():
        raise PyroVAEError(f"{name}: {folder} is a file, not a folder; {fix}.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PyroVAEError(f"{name}: the folder {folder} is not writable; {fix}.")


def make_folder(path: Path) -> None:
    """Create the folder of the file ``path`` and its missing parents (nothing if it exists);
    a failure (read-only file system, a file in the way) is one sentence (:class:`WriteError`)."""
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(f"cannot create the folder {folder} for {Path(path).name} "
                         f"({err.strerror or err}); choose a path in a writable place.") from None
