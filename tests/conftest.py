"""Shared fixtures: seeding, synthetic image data in IDX files, and real-data lookup.

A test that needs real data calls ``require_path``: where the data is missing it fails
under CI (CI has the data) and is skipped with the reason elsewhere.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch

torch.set_num_threads(1)
SHARED_DATA = Path(os.environ.get("PYRO_VAE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def require_path(path: Path, what: str) -> Path:
    if Path(path).exists():
        return Path(path)
    message = f"{what} not found at {path}"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must have it (see .ci/run)")
    pytest.skip(f"{message} (install it to run this test)")


def pytest_collection_modifyitems(config, items):
    """For ``make test`` (pytest-xdist, ``--dist loadgroup``): the tests of a module that share a
    module-scoped fixture (a trained run, a large IDX folder) form one xdist group, so one
    worker builds the fixture once and runs them all; every other test goes to whichever
    worker is free. Without xdist the mark does nothing."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        if fixtures and any(defs[-1].scope == "module" for defs in fixtures.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (uint8) as an IDX file; gzipped if the name ends in .gz."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)
    return path


def synthetic_images(n: int, seed: int = 0, size: int = 28, classes: int = 4):
    """Grey-level images of a bright square whose corner (the label) varies, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = np.zeros((n, size, size), dtype=np.float32)
    half = size // 2
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 2)
        top, left = r * half + rng.integers(1, 5), c * half + rng.integers(1, 5)
        images[i, top:top + 8, left:left + 8] = rng.uniform(0.7, 1.0)
    images += rng.uniform(0, 0.15, images.shape)
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels.astype(np.uint8)


@pytest.fixture(scope="session")
def idx_dir(tmp_path_factory) -> Path:
    """A folder of MNIST-style IDX files: 1,200 training and 200 test synthetic images."""
    folder = tmp_path_factory.mktemp("idx")
    train, train_labels = synthetic_images(1200, seed=1)
    test, test_labels = synthetic_images(200, seed=2)
    write_idx(folder / "train-images-idx3-ubyte.gz", train)
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_labels)
    write_idx(folder / "t10k-images-idx3-ubyte", test)
    write_idx(folder / "t10k-labels-idx1-ubyte", test_labels)
    return folder
