"""IDX and .amat readers on files the tests write, good and broken."""

import gzip

import numpy as np
import pytest

from conftest import write_idx
from pyro_vae.data.readers import read_amat, read_idx
from pyro_vae.errors import DataError


def test_idx_round_trip_plain_and_gzipped(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 4)).astype(np.uint8)
    for name in ("a-idx3-ubyte", "b-idx3-ubyte.gz"):
        assert np.array_equal(read_idx(write_idx(tmp_path / name, images), expected_ndim=3), images)
    labels = np.arange(5, dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "l-idx1-ubyte", labels), 1), labels)


def test_idx_wrong_magic_is_refused_by_name(tmp_path):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + bytes(12))
    with pytest.raises(DataError, match="bad-idx3-ubyte.*magic"):
        read_idx(path)


def test_idx_truncated_and_too_long_are_refused(tmp_path):
    images = np.zeros((4, 2, 2), dtype=np.uint8)
    path = write_idx(tmp_path / "t-idx3-ubyte", images)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)
    path.write_bytes(write_idx(tmp_path / "u", images).read_bytes() + b"\x00")
    with pytest.raises(DataError, match="longer than its header"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(DataError, match="header"):
        read_idx(path)


def test_idx_wrong_dimensions_and_broken_gzip(tmp_path):
    labels = write_idx(tmp_path / "labels-idx1-ubyte", np.arange(3, dtype=np.uint8))
    with pytest.raises(DataError, match="1 dimensions but 3"):
        read_idx(labels, expected_ndim=3)
    gz = tmp_path / "x-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (100).to_bytes(4, "big") + bytes(100))[:-10])
    with pytest.raises(DataError, match="gzip"):
        read_idx(gz)
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "missing")


def _amat(rows):
    return "\n".join(" ".join(str(v) for v in row) for row in rows) + "\n"


def test_amat_round_trip_and_errors(tmp_path):
    data = np.random.default_rng(1).integers(0, 2, (6, 784))
    good = tmp_path / "good.amat.gz"
    good.write_bytes(gzip.compress(_amat(data).encode()))
    assert np.array_equal(read_amat(good), data)
    short = tmp_path / "short.amat"
    short.write_text(_amat(data)[:-20] + "\n")
    with pytest.raises(DataError, match="short.amat line 6 has"):
        read_amat(short)
    grey = tmp_path / "grey.amat"
    grey.write_text(_amat(data * 0.5))
    with pytest.raises(DataError, match="other than 0 and 1"):
        read_amat(grey)
    words = tmp_path / "words.amat"
    words.write_text(_amat(data).replace("1", "x", 1))
    with pytest.raises(DataError, match="not numbers"):
        read_amat(words)
    empty = tmp_path / "empty.amat"
    empty.write_text("\n")
    with pytest.raises(DataError, match="no images"):
        read_amat(empty)
