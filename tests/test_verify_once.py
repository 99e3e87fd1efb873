"""A published data set's files are checked against their SHA-256 as they are read, each
un-gzipped once (the check used to gunzip every file a second time), and a file whose
content differs is still refused before it is used; byte images are support-checked by their
distinct values, which are exactly the pixels' values as training reads them."""

import gzip
import hashlib

import pytest

from pyro_vae.data import datasets
from pyro_vae.data.sources import DataFile, DataSource
from pyro_vae.errors import DataError

ROLES = ("train_images", "valid_images", "test_images")


def _fake_binarized_mnist(folder, rows):
    """Three tiny .amat.gz files in the published layout and a DataSource with their hashes."""
    files = {}
    for role, n in zip(ROLES, rows):
        line = " ".join("1" if (i + n) % 3 == 0 else "0" for i in range(784)) + " \n"
        content = (line * n).encode()
        name = f"binarized_mnist_{role.split('_')[0]}.amat"
        (folder / f"{name}.gz").write_bytes(gzip.compress(content))
        files[role] = DataFile(name, hashlib.sha256(content).hexdigest())
    return DataSource("binarized-mnist", files, ())


def test_each_file_is_gunzipped_once_and_checked(tmp_path, monkeypatch):
    source = _fake_binarized_mnist(tmp_path, (12, 5, 7))
    monkeypatch.setattr(datasets, "BINARIZED_MNIST", source)
    opened = []
    real_decompress, real_open = gzip.decompress, gzip.open
    monkeypatch.setattr(gzip, "decompress", lambda data, *a: opened.append("decompress") or real_decompress(data, *a))
    monkeypatch.setattr(gzip, "open", lambda *a, **k: opened.append("open") or real_open(*a, **k))
    data = datasets.load_dataset("binarized-mnist", str(tmp_path), download=False)
    assert (len(data.train), len(data.valid), len(data.test)) == (12, 5, 7)
    assert opened == ["decompress"] * 3  # one gunzip a file, none for a separate check
    assert data.train.images[0].flatten()[:4].tolist() == [1.0, 0.0, 0.0, 1.0]  # (i + 12) % 3 == 0 at i = 0, 3, ...


def test_a_file_that_does_not_match_its_hash_is_refused_on_loading(tmp_path, monkeypatch):
    source = _fake_binarized_mnist(tmp_path, (12, 5, 7))
    valid = tmp_path / "binarized_mnist_valid.amat.gz"
    valid.write_bytes(gzip.compress(gzip.decompress(valid.read_bytes()).replace(b"1", b"0", 1)))  # one pixel off
    monkeypatch.setattr(datasets, "BINARIZED_MNIST", source)
    with pytest.raises(DataError, match="binarized_mnist_valid.amat.gz does not match its published SHA-256"):
        datasets.load_dataset("binarized-mnist", str(tmp_path), download=False)


@pytest.mark.parametrize("scale", [255.0, 1.0])
def test_distinct_values_are_the_pixels_as_read_bit_for_bit(scale):
    import torch

    from pyro_vae.data.folders import ByteImages

    torch.manual_seed(0)
    high = 256 if scale == 255.0 else 2
    data = torch.randint(0, high, (9, 1, 3, 3), dtype=torch.uint8)
    data[4] = high - 1  # a value only row 4 holds
    data[data == high - 1] = 0
    data[4, 0, 0, 0] = high - 1
    for rows in (None, torch.tensor([0, 2, 4]), torch.tensor([1, 3, 5, 6, 7, 8, 0, 2, 3])):
        images = ByteImages(data, rows, scale=scale)
        expected = torch.unique(images[:])  # every pixel as float32, as training reads it
        assert torch.equal(images.distinct_values(), expected)
        holds_row_4 = rows is None or 4 in rows.tolist()  # the third has all 9 rows' length, not row 4
        assert ((high - 1) / scale in images.distinct_values().tolist()) == holds_row_4
