"""Data held as bytes, read back bit for bit; the .amat fast path; the CLI's allocator
setting and a lean import (issue #16)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import write_idx
from pyro_vae.data.datasets import as_tensor, load_dataset
from pyro_vae.data.folders import ByteImages
from pyro_vae.data.readers import _single_digit_rows, read_amat
from pyro_vae.memory import fix_mmap_threshold


def test_byte_images_read_as_the_float_loader_did_bit_for_bit():
    every_byte = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    # What the loader computed before: numpy float32 division by 255.
    before = torch.from_numpy(every_byte.numpy().astype(np.float32) / 255.0)
    assert torch.equal(ByteImages(every_byte)[:], before)
    assert torch.equal(ByteImages(every_byte)[:].view(torch.int32), before.view(torch.int32))
    # Code written for a float tensor keeps working: tensor methods and torch functions see the floats.
    images = ByteImages(every_byte)
    assert images.mean().item() == before.mean().item() and torch.nn.Flatten()(images).shape == (1, 256)
    assert torch.equal(torch.cat([images, images])[1], before[0])
    assert torch.equal(images == 1.0, before == 1.0) and torch.equal(1 - images, 1 - before)
    binary = torch.tensor([0, 1, 1, 0], dtype=torch.uint8).reshape(4, 1, 1, 1)
    assert ByteImages(binary, scale=1.0)[torch.tensor([1, 3])].flatten().tolist() == [1.0, 0.0]


def test_idx_data_set_is_held_as_bytes_and_static_binarization_as_0_1_bytes(tmp_path):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (60, 4, 4), dtype=np.uint8), rng.integers(0, 256, (12, 4, 4), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", train)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test)
    data = load_dataset("idx", str(tmp_path))
    assert data.train.images.data.dtype == torch.uint8 and data.train.images.data.numel() == train.size
    # Last sixth of the training file validates; values are k / 255 exactly.
    assert torch.equal(as_tensor(data.valid.images), torch.from_numpy(train[50:, None].astype(np.float32) / 255))
    assert torch.equal(as_tensor(data.test.images), torch.from_numpy(test[:, None].astype(np.float32) / 255))
    static = load_dataset("idx", str(tmp_path), binarize="static", seed=5)
    assert static.train.images.data.dtype == torch.uint8 and static.train.images.scale == 1.0
    # The same draw as one Bernoulli over the whole float split with the run's seed.
    expected = torch.bernoulli(torch.from_numpy(train[:50, None].astype(np.float32) / 255),
                               generator=torch.Generator().manual_seed(5))
    assert torch.equal(as_tensor(static.train.images), expected)


def test_amat_fast_path_agrees_with_the_general_parser(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2, (5, 6)).astype(np.uint8)
    lines = [" ".join(map(str, row)) for row in values]
    # Blank lines, trailing blanks, tabs and a missing final newline are all allowed.
    text = "\n".join(lines[:2]) + "\n\n" + lines[2].replace(" ", "\t") + "  \n" + "\r\n".join(lines[3:])
    path = tmp_path / "x.amat"
    path.write_text(text)
    fast = _single_digit_rows(path.read_bytes(), 6)
    assert fast is not None and np.array_equal(fast, values)
    assert np.array_equal(read_amat(path, width=6), values)
    # Anything but lone 0/1 digits goes to the general parser (which names the fault).
    for other in ("0 1 1.0 0 1 0\n", "0 1 10 0 1 0\n", "0 1 1 0 1\n"):
        assert _single_digit_rows(other.encode(), 6) is None


def test_canonical_amat_layout_reads_the_digits_and_refuses_the_rest():
    """The published files' layout (single spaces, one newline, 2 x width bytes a line) is
    read from strided views; every other layout is left to the slower parsers."""
    from pyro_vae.data.readers import _canonical_rows

    rng = np.random.default_rng(3)
    values = rng.integers(0, 2, (4, 6)).astype(np.uint8)
    text = "".join(" ".join(map(str, row)) + "\n" for row in values)
    assert np.array_equal(_canonical_rows(text.encode(), 6), values)
    assert np.array_equal(_canonical_rows(text.encode(), 6), _single_digit_rows(text.encode(), 6))
    for other in (text[:-1],                      # no final newline
                  text.replace(" ", "\t", 1),     # a tab
                  text.replace("\n", "\r", 1),    # a carriage return
                  "2" + text[1:],                 # a digit other than 0/1
                  "/" + text[1:],                 # a byte below "0" (wraps to 255)
                  "0 1 1 0 1 0 1\n0 1 1 0 1\n"):  # 2 x 12 bytes, lines of 7 and 5 values
        assert _canonical_rows(other.encode(), 6) is None, other


def test_a_loaded_data_set_costs_under_twice_its_bytes(tmp_path):
    """Resident memory added by load_dataset, in a fresh process: as floats it was about 4x
    the images' bytes (plus the parse), as bytes it is about 1x."""
    n = 24_000  # 18.8 MB of uint8 images: well above the interpreter's noise
    rng = np.random.default_rng(2)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (1000, 28, 28), dtype=np.uint8))
    probe = ("import gc, os, sys\n"
             "from pyro_vae.data.datasets import load_dataset\n"
             "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')\n"
             "start = rss(); data = load_dataset('idx', sys.argv[1]); gc.collect()\n"
             "print((rss() - start) / sum(data.split(s).images.shape.numel() for s in ('train', 'valid', 'test')))\n")
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/statm (Linux only)")
    ratio = float(subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True,
                                 check=True).stdout)
    assert ratio < 2.0, ratio


def test_the_cli_fixes_the_mmap_threshold_and_importing_it_loads_no_matplotlib():
    if sys.platform.startswith("linux") and "glibc" in " ".join(__import__("platform").libc_ver()):
        assert fix_mmap_threshold() is True
    code = ("import sys, pyro_vae, pyro_vae.cli, pyro_vae.runs, pyro_vae.inference.train\n"
            "print(sorted(m for m in ('matplotlib', 'tensorboard') if m in sys.modules))\n"
            "from pyro_vae import plot_samples\n"
            "print('matplotlib' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "True"


def test_release_free_heap_returns_the_holes_that_small_tensors_leave():
    """1 MiB tensors (under the fixed 4 MiB mmap threshold) live on the heap; with the last
    one still alive the heap cannot shrink from its top, so freeing the others returns
    nothing to the system until release_free_heap() trims the free pages inside it."""
    if not (sys.platform.startswith("linux") and "glibc" in " ".join(__import__("platform").libc_ver())):
        pytest.skip("glibc's malloc_trim (Linux with glibc only)")
    code = ("import os, torch\n"
            "from pyro_vae.memory import fix_mmap_threshold, release_free_heap\n"
            "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20\n"
            "fix_mmap_threshold()\n"
            "blocks = [torch.ones(2**18) for _ in range(200)]\n"  # 200 x 1 MiB, touched
            "last = blocks[-1]\n"
            "del blocks\n"
            "freed = rss()\n"
            "print(release_free_heap(), freed - rss())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "True" and float(out[1]) > 150, out



def test_fix_mmap_threshold_fixes_both_glibc_thresholds(monkeypatch):
    """The CLI's allocator setting is two mallopt calls: the mmap threshold (M_MMAP_THRESHOLD,
    -3) at 4 MiB, so tensors above it are mmapped and handed back on free, and the trim
    threshold (M_TRIM_THRESHOLD, -1) at 64 MiB, so the heap keeps the free memory of one
    estimator chunk for the next instead of handing it back and faulting it in again (fixing
    the first alone leaves the second at glibc's 128 KiB)."""
    import ctypes

    from pyro_vae import memory

    calls = []

    class FakeLibc:
        class mallopt:  # noqa: N801 (a ctypes function object)
            def __new__(cls, param, value):
                calls.append((param, value))
                return 1

    monkeypatch.setattr(memory.sys, "platform", "linux")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibc)
    assert memory.fix_mmap_threshold() is True
    assert calls == [(-3, 4 * 2**20), (-1, 64 * 2**20)]
