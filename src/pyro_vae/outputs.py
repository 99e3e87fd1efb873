"""Where a command writes a file: one rule for every command's ``-o`` (and ``--figure``).

A missing folder is created, with its parents, when the file is written (``mkdir -p``), as
``train --run-dir`` and ``sweep`` create theirs: every command treats a path the same way.
What can never be written is refused before anything is computed, in one sentence
(:func:`check_output`): a path that is a directory, a folder on the path that is a file,
a nearest existing folder that is not writable, or a file by which a run or a sweep is read
back (:data:`RECORDS`: its checkpoints, configuration, metrics, summary; any run's or sweep's,
not only the one a command reads). The folder itself is made only when the
file is written (:func:`make_folder`), so a command refused or stopped before then leaves
no empty folder behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyro_vae.errors import PyroVAEError, WriteError


#: The files a directory is read back from, by kind of directory: the files that mark one
#: (a run: ``config.toml``, or the last checkpoint of a ``pyro_vae.fit`` run without a config;
#: a sweep: ``sweep.json``) and the files no output may replace (``--resume``, ``evaluate``
#: and ``compare`` would then fail on the run; ``loglik_examples.npz``, the per-image values of
#: ``evaluate --k``'s loglik.json, is what ``compare`` pairs runs by, and ``-o`` naming it wrote JSON into it).
RECORDS = {
    "run": (("config.toml", "checkpoint_last.pt"),
            frozenset({"config.toml", "checkpoint_last.pt", "checkpoint_best.pt", "metrics.csv", "summary.json",
                       "labelled_examples.json", "m1_codes.json", "loglik_examples.npz"})),
    "sweep": (("sweep.json",), frozenset({"sweep.json", "study.db", "results.csv"})),
}


def check_output(path: Path, option: str | None = "-o", own_record: bool = False) -> None:
    """Refuse an output ``path`` that could not be written, or that is one of the files a run
    or sweep directory is read back from (:data:`RECORDS`; unless ``own_record``: the command
    keeps that record itself, as a sweep its ``sweep.json``), with :class:`PyroVAEError`, naming
    ``option`` (the flag that gave it; None: a default path in a run directory)."""
    path = Path(path)
    name = f"{option} {path}" if option else f"the output {path}"
    fix = f"give {option} another path" if option else "make it writable"
    for what, (markers, records) in RECORDS.items():
        if not own_record and path.name in records and any((path.parent / m).is_file() for m in markers):
            raise PyroVAEError(f"{name} would overwrite {path.name} of the {what} in {path.parent}, which "
                               f"--resume, evaluate and compare read back; {fix}.")
    # Outputs are written to a temporary file renamed over the path (a crash leaves the old file
    # whole): that would replace a link itself, or a device such as /dev/null, by a plain file.
    if path.is_symlink():
        raise PyroVAEError(f"{name} is a symbolic link (to {os.readlink(path)}), which writing would replace "
                           f"by a plain file; give {option or 'the output'} the file's own path, or another path.")
    if path.is_dir():
        raise PyroVAEError(f"{name} is a directory; {fix} (a file name).")
    if path.exists() and not path.is_file():
        raise PyroVAEError(f"{name} is not a regular file (a device, pipe or socket), which writing would replace "
                           f"by a plain file; {fix} (a file name).")
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
