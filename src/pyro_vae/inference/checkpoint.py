"""Checkpoints: one file of tensors and plain values, written atomically, loaded safely.

A checkpoint holds the model's and guide's parameters, the optimizer's state, the
resolved configuration, the epoch, the training history and every RNG state that the
run draws from, so that ``--resume`` continues bit for bit on CPU. It is written to a
temporary file in the same directory, flushed to disk, then renamed over the old one
(``os.replace`` is atomic), so a crash mid-write leaves the previous checkpoint whole;
a failed write (full disk, read-only directory) is one sentence (:class:`WriteError`).
It is read with ``torch.load(weights_only=True)``, which refuses pickled code, after the
SHA-256 of its bytes, kept in the zip archive's comment, is checked, which refuses a
flipped byte anywhere in the file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from pyro_vae.errors import CheckpointError, WriteError

LAST = "checkpoint_last.pt"
BEST = "checkpoint_best.pt"


#: Messages of torch.save's own writer (it reports a failed write as a RuntimeError).
_TORCH_WRITE_FAILURE = re.compile(r"unexpected pos|file write failed|failed writing|iostream error", re.IGNORECASE)


def write_failure_message(path: Path, err: BaseException, existed: bool) -> str:
    """One sentence for a failed write of ``path``: what went wrong, the fix, and that the
    previous version (if there was one) is intact."""
    code = getattr(err, "errno", None)
    if code is None and isinstance(err, RuntimeError):  # torch.save does not say why; look at the disk
        try:
            code = errno.ENOSPC if shutil.disk_usage(path.parent).free < 2**20 else None
        except OSError:
            pass
    before = f"the previous {path.name} is intact" if existed else f"no {path.name} was written"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device while writing {path}; free disk space and run again ({before})."
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot write {path} ({os.strerror(code)}); make {path.parent} writable or choose another "
                f"directory ({before}).")
    reason = getattr(err, "strerror", None) or (str(err).splitlines() or [type(err).__name__])[0]
    return f"could not write {path} ({reason}); check the disk and the directory ({before})."


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, flush it to disk, then
    rename it over ``path``. On any error the temporary file is removed and ``path`` is
    untouched; a failed write (full disk, read-only directory) raises :class:`WriteError`."""
    path = Path(path)
    existed = path.exists()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(err, OSError) or (isinstance(err, RuntimeError) and _TORCH_WRITE_FAILURE.search(str(err))):
            raise WriteError(write_failure_message(path, err, existed)) from err
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


#: The zip archive's comment carries ``sha256:`` and the hex digest of every byte before it.
DIGEST_PREFIX = b"sha256:"
_END_OF_DIRECTORY = b"PK\x05\x06"
_COMMENT_SIZE = len(DIGEST_PREFIX) + 64


def checkpoint_bytes(state: dict[str, Any]) -> bytes:
    """``torch.save(state)`` as bytes, with the SHA-256 of the archive (all of it up to the
    comment) written as the zip comment, which ``torch.load`` ignores."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    if data[-22:-18] != _END_OF_DIRECTORY or data[-2:] != b"\0\0":  # not the layout torch writes today
        return data  # the zip CRC-32s still guard it
    comment = DIGEST_PREFIX + hashlib.sha256(data[:-2]).hexdigest().encode()
    return data[:-2] + len(comment).to_bytes(2, "little") + comment


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically."""
    data = checkpoint_bytes(state)
    atomic_write_bytes(path, lambda handle: handle.write(data))


def verify_checkpoint_bytes(path: Path, raw: bytes) -> None:
    """Refuse a checkpoint whose bytes changed after it was written: the SHA-256 in its zip
    comment must match, or, in a file without one, every record's CRC-32 (which torch.load
    itself does not check) must, as :meth:`zipfile.ZipFile.testzip` recomputes them."""
    comment = raw[-_COMMENT_SIZE:]
    if (comment.startswith(DIGEST_PREFIX) and raw[-_COMMENT_SIZE - 2:-_COMMENT_SIZE]
            == _COMMENT_SIZE.to_bytes(2, "little")):
        if hashlib.sha256(raw[:-_COMMENT_SIZE - 2]).hexdigest().encode() != comment[len(DIGEST_PREFIX):]:
            raise CheckpointError(
                f"checkpoint {path} is corrupt (its bytes do not match the SHA-256 stored when it was written, so "
                "they changed on disk or in transfer); restore it from a copy or train again."
            )
        return
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            bad = archive.testzip()
    except Exception as err:  # noqa: BLE001 - any failure to parse the container means damage
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt (not a whole torch zip archive: {err}); "
                              "restore it from a copy or train again.") from None
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} is corrupt (its record {bad} does not match the CRC-32 stored when it was "
            "written, so its bytes changed on disk or in transfer); restore it from a copy or train again."
        )


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely: its digest checked, tensors and plain values only, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; is this a pyro-vae run directory?")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror or err}).") from None
    verify_checkpoint_bytes(path, raw)
    try:
        return torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain values, so it was "
            "refused (it could run code); only load checkpoints written by pyro-vae."
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({err}).") from err
