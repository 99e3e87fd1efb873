"""Readers for the IDX (MNIST) and ``.amat`` (Larochelle's binarized MNIST) formats.

Both read plain or gzipped files, check what can be checked (magic number, header,
sizes, truncation, values), and raise :class:`DataError` naming the file on any fault.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from pyro_vae.data.sources import verify_content
from pyro_vae.errors import DataError

# IDX magic: two zero bytes, a type code, the number of dimensions.
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_bytes(path: Path, sha256: str | None = None) -> bytes:
    """The file's bytes, un-gzipped if its name ends in ``.gz``; with ``sha256``, refused
    (:class:`DataError`) unless they have that SHA-256, the data set's published one."""
    data = _read_bytes(path)
    if sha256 is not None:
        verify_content(path, data, sha256)
    return data


def _read_bytes(path: Path) -> bytes:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"data file {path} does not exist.") from None
    except OSError as err:
        raise DataError(f"data file {path} cannot be read ({err.strerror or err}); check its permissions.") from None
    if path.name.endswith(".gz"):
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(
                f"data file {path} is not a complete gzip stream ({err}); download it again."
            ) from None
    return raw


def read_idx(path: Path, expected_ndim: int | None = None, sha256: str | None = None) -> np.ndarray:
    """An IDX file as an array of the shape and type its header gives.

    ``expected_ndim`` is 3 for image files (N, rows, cols) and 1 for label files; ``sha256``
    the content's published hash, checked first (:func:`read_bytes`).
    """
    raw = read_bytes(path, sha256)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an IDX file (wrong magic number {raw[:4].hex() or 'empty'}).")
    ndim = raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(
            f"{path} has {ndim} dimensions but {expected_ndim} were expected "
            f"({'images' if expected_ndim == 3 else 'labels'}); is it the right file?"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its IDX header.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"{path} is {what}: its header gives shape {shape} ({expected} bytes) but it has "
            f"{len(raw)} bytes; download it again."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def read_amat(path: Path, width: int = 784, sha256: str | None = None) -> np.ndarray:
    """A ``.amat`` file (one image a line, ``width`` space-separated 0/1 values) as
    a ``uint8`` array ``[N, width]``; ``sha256`` as for :func:`read_bytes`."""
    raw = read_bytes(path, sha256)
    fast = _canonical_rows(raw, width)
    if fast is None:
        fast = _single_digit_rows(raw, width)
    if fast is not None:
        return fast
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text .amat file (it has non-ASCII bytes).") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path} holds no images.")
    # Fast path: parse every number at once; fall back to line by line to name a fault.
    try:
        with np.errstate(over="ignore"):  # "1e999" becomes inf and is refused below
            values = np.array(text.split(), dtype=np.float32) if _all_numeric(text) else None
    except ValueError:
        values = None
    if values is None or values.size != len(lines) * width:
        for number, line in enumerate(lines, start=1):
            row = line.split()
            if len(row) != width:
                raise DataError(
                    f"{path} line {number} has {len(row)} values, not {width}; the file is "
                    "truncated or not a binarized-MNIST .amat."
                )
        raise DataError(f"{path} has values that are not numbers.")
    if not np.isin(values, (0.0, 1.0)).all():
        raise DataError(f"{path} has values other than 0 and 1; binarized MNIST is binary.")
    return values.reshape(len(lines), width).astype(np.uint8)


def _all_numeric(text: str) -> bool:
    return not text.translate(str.maketrans("", "", "0123456789.eE+- \t\r\n"))



def _canonical_rows(raw: bytes, width: int) -> np.ndarray | None:
    """The layout the published binarized-MNIST files have: every line exactly ``width``
    digits 0/1 joined by single spaces and ended by a newline, so ``2 * width`` bytes a
    line. Read as strided views of the bytes (the digits are the even bytes of each row):
    a few passes over the file instead of :func:`_single_digit_rows`' dozen. ``uint8
    [N, width]``, or None for any other layout."""
    line = 2 * width
    if not raw or len(raw) % line:
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, line)
    separators = rows[:, 1::2]
    if not ((separators[:, :-1] == ord(" ")).all() and (separators[:, -1] == ord("\n")).all()):
        return None
    values = rows[:, ::2] - np.uint8(ord("0"))  # a byte below "0" wraps past 1 and is refused
    if not (values <= 1).all():
        return None
    return values


def _single_digit_rows(raw: bytes, width: int) -> np.ndarray | None:
    """The common case of a ``.amat`` file, read from its bytes without making a Python
    string per value (which costs hundreds of MiB for the training file): every value a
    lone ``0`` or ``1`` between blanks, ``width`` of them on every non-blank line. Returns
    ``uint8 [N, width]``, or None for anything else (the general parser then reads the
    file and names the fault)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    # In-place byte comparisons: np.isin would index a table with an int64 copy of the file.
    digit = data == ord("0")
    digit |= data == ord("1")
    known = digit.copy()
    for blank in b" \t\r\n":
        known |= data == blank
    if data.size == 0 or not known.all() or (digit[1:] & digit[:-1]).any():
        return None
    del known
    values = data[digit] - ord("0")
    # Values per line: digits summed from each line's start (a last line may lack its newline),
    # a few thousand lines at a time (reduceat casts its whole input to int64).
    starts = np.concatenate(([0], np.flatnonzero(data == ord("\n")) + 1))
    starts = starts[starts < data.size]
    counts = np.empty(len(starts), dtype=np.int64)
    for first in range(0, len(starts), 4096):
        block = starts[first:first + 4096]
        stop = starts[first + 4096] if first + 4096 < len(starts) else data.size
        counts[first:first + 4096] = np.add.reduceat(digit[block[0]:stop], block - block[0], dtype=np.int64)
    counts = counts[counts > 0]  # blank lines
    if counts.size == 0 or not (counts == width).all():
        return None
    return values.reshape(counts.size, width)
