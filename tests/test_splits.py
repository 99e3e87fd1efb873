"""Every named data set's splits, on synthetic files of the real files' sizes and names:
the documented sizes, disjoint, in file order; and binarization's statistics.

Each synthetic image is 2 x 2 pixels that spell out its own index in the file (base 256)
and which file it came from, so a split can be traced back to the rows it holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest
import torch

from conftest import write_idx
from pyro_vae.data import datasets
from pyro_vae.data.datasets import FolderOptions, binarize_batch, load_dataset
from pyro_vae.errors import DataError
from pyro_vae.data.sources import BINARIZED_MNIST, FASHION_MNIST, MNIST, content_sha256

TRAIN, TEST = 0, 1  # the file code in an image's last pixel


def _indexed_images(n: int, file_code: int) -> np.ndarray:
    i = np.arange(n)
    return np.stack([i // 65536, (i // 256) % 256, i % 256, np.full(n, file_code)], 1).reshape(n, 2, 2).astype(np.uint8)


def _rows(images: torch.Tensor) -> list[tuple[int, int]]:
    """(file code, index in that file) of every image of a split."""
    pixels = (images.reshape(len(images), 4) * 255).round().long()
    index = pixels[:, 0] * 65536 + pixels[:, 1] * 256 + pixels[:, 2]
    return list(zip(pixels[:, 3].tolist(), index.tolist()))


def _idx_folder(folder, n_train: int, n_test: int, labelled: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", _indexed_images(n_train, TRAIN))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", _indexed_images(n_test, TEST))
    if labelled:
        write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(n_train) % 10)
        write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10)
    return folder


def _trusting(monkeypatch, name: str, source, folder):
    """``source`` with the synthetic files' checksums, so the real lookup accepts them."""
    files = {role: dataclasses.replace(spec, sha256=content_sha256(folder / spec.name))
             for role, spec in source.files.items() if (folder / spec.name).is_file()}
    monkeypatch.setattr(datasets, name, dataclasses.replace(source, files={**source.files, **files}))


def _check_rows(split, file_code: int, first: int, stop: int):
    """The split holds rows first..stop-1 of that file, in order, with their labels."""
    assert _rows(split.images) == [(file_code, i) for i in range(first, stop)]
    if split.labels is not None:
        assert split.labels.tolist() == [i % 10 for i in range(first, stop)]


@pytest.fixture(scope="module")
def mnist_sized(tmp_path_factory):
    """60,000 training and 10,000 test images, as the MNIST and Fashion-MNIST files hold."""
    return _idx_folder(tmp_path_factory.mktemp("mnist-sized"), 60_000, 10_000)


@pytest.mark.parametrize("name,source", [("fashion-mnist", "FASHION_MNIST"), ("mnist", "MNIST")])
def test_mnist_style_sets_split_50000_10000_10000_disjoint_and_in_order(mnist_sized, monkeypatch, name, source):
    _trusting(monkeypatch, source, {"FASHION_MNIST": FASHION_MNIST, "MNIST": MNIST}[source], mnist_sized)
    data = load_dataset(name, str(mnist_sized), download=False)
    assert (len(data.train), len(data.valid), len(data.test)) == (50_000, 10_000, 10_000)
    _check_rows(data.train, TRAIN, 0, 50_000)
    _check_rows(data.valid, TRAIN, 50_000, 60_000)
    _check_rows(data.test, TEST, 0, 10_000)
    assert data.class_names == (datasets.FASHION_MNIST_CLASSES if name == "fashion-mnist" else datasets.DIGIT_CLASSES)
    assert all(split.labels is not None for split in (data.train, data.valid, data.test))  # labelled


def test_mnist_t10k_splits_the_test_file_7000_1000_2000(mnist_sized, monkeypatch):
    _trusting(monkeypatch, "MNIST", MNIST, mnist_sized)
    data = load_dataset("mnist-t10k", str(mnist_sized), download=False)
    _check_rows(data.train, TEST, 0, 7000)
    _check_rows(data.valid, TEST, 7000, 8000)
    _check_rows(data.test, TEST, 8000, 10_000)
    # the file's labels (row i is labelled i % 10 here) stay with their images
    for split, first in ((data.train, 0), (data.valid, 7000), (data.test, 8000)):
        assert torch.equal(split.labels, torch.arange(first, first + len(split)) % 10)
    assert data.class_names == datasets.DIGIT_CLASSES and data.name == "mnist-t10k"


@pytest.mark.parametrize("n_train,n_valid", [(20_000, 10_000), (19_999, 3333), (1200, 200), (6, 1)])
def test_own_idx_folders_hold_out_10000_or_a_sixth(tmp_path, n_train, n_valid):
    folder = _idx_folder(tmp_path / "own", n_train, 30, labelled=n_train > 100)
    data = load_dataset("idx", str(folder))
    _check_rows(data.train, TRAIN, 0, n_train - n_valid)
    _check_rows(data.valid, TRAIN, n_train - n_valid, n_train)
    _check_rows(data.test, TEST, 0, 30)
    if n_train <= 100:
        assert data.train.labels is None and data.class_names == ()
    else:
        assert data.class_names == datasets.DIGIT_CLASSES
        assert all(split.labels is not None for split in (data.train, data.valid, data.test))


def test_binarized_mnist_takes_each_split_from_its_own_file(tmp_path, monkeypatch):
    """Larochelle's three .amat files (one 28 x 28 0/1 image a line): each split is its file,
    whole and in order. (The real files hold 50,000 / 10,000 / 10,000 lines; these hold
    fewer, the split is the file either way.)"""
    sizes = {"train_images": 40, "valid_images": 20, "test_images": 10}
    for code, (role, n) in enumerate(sizes.items()):
        rows = np.zeros((n, 784), dtype=np.uint8)
        rows[:, :8] = (np.arange(n)[:, None] >> np.arange(8)) & 1  # the index in binary
        rows[:, 8 + code] = 1  # which file
        (tmp_path / BINARIZED_MNIST.files[role].name).write_text(
            "\n".join(" ".join(map(str, row)) for row in rows) + "\n")
    _trusting(monkeypatch, "BINARIZED_MNIST", BINARIZED_MNIST, tmp_path)
    with pytest.raises(DataError, match="binarize='dynamic' has no effect on binarized-mnist"):
        load_dataset("binarized-mnist", str(tmp_path), binarize="dynamic", download=False)  # as the CLI refuses it
    data = load_dataset("binarized-mnist", str(tmp_path), download=False)
    assert data.binarize == "none"  # already binary: never binarized again
    # a run recorded before that rule (config.toml: binarize = "dynamic") still opens, as binary
    from pyro_vae.config import Config
    from pyro_vae.runs import open_dataset

    old = Config()
    old.data.dataset, old.data.data_dir, old.data.binarize = "binarized-mnist", str(tmp_path), "dynamic"
    assert torch.equal(open_dataset(old).test.images, data.test.images)
    with pytest.raises(DataError, match="folder options have no effect on 'binarized-mnist'"):
        load_dataset("binarized-mnist", str(tmp_path), download=False, folder=FolderOptions(size=8))
    for code, split in enumerate((data.train, data.valid, data.test)):
        flat = split.images.reshape(len(split), 784)
        assert split.images.shape[1:] == (1, 28, 28)
        assert flat[:, 8:11].argmax(1).tolist() == [code] * len(split)
        index = (flat[:, :8] * 2 ** torch.arange(8)).sum(1)
        assert index.tolist() == list(range(list(sizes.values())[code]))


def test_train_limit_keeps_the_first_training_images_only(tmp_path):
    folder = _idx_folder(tmp_path / "own", 1200, 30)
    data = load_dataset("idx", str(folder), train_limit=70)
    _check_rows(data.train, TRAIN, 0, 70)
    _check_rows(data.valid, TRAIN, 1000, 1200)


# -- binarization ----------------------------------------------------------------------

def test_binarize_batch_is_one_bernoulli_draw_per_pixel():
    n = 200_000
    grey = torch.full((n, 1, 1, 1), 0.3)
    a = binarize_batch(grey, torch.Generator().manual_seed(1))
    b = binarize_batch(grey, torch.Generator().manual_seed(2))
    assert set(a.unique().tolist()) == {0.0, 1.0}
    se = math.sqrt(0.3 * 0.7 / n)
    assert abs(a.mean().item() - 0.3) < 3 * se and abs(b.mean().item() - 0.3) < 3 * se
    assert not torch.equal(a, b)
    # Independent draws: the two agree on p^2 + (1-p)^2 = 58% of pixels.
    assert abs((a == b).float().mean().item() - 0.58) < 3 * math.sqrt(0.58 * 0.42 / n)
    assert torch.equal(a, binarize_batch(grey, torch.Generator().manual_seed(1)))  # the generator decides


def test_binarize_batch_keeps_black_and_white_pixels():
    x = torch.tensor([0.0, 1.0]).repeat(500)
    assert torch.equal(binarize_batch(x, torch.Generator().manual_seed(0)), x)



@pytest.mark.parametrize("x, message", [
    (torch.full((2, 3), 255.0), r"lie in \[255, 255\]; scale them to \[0, 1\] first"),
    (torch.tensor([-0.5, 0.5]), r"lie in \[-0.5, 0.5\]"),
    (torch.tensor([0, 128, 255], dtype=torch.uint8), "float tensor in \\[0, 1\\], not torch.uint8"),
    (torch.tensor([float("nan"), 0.5]), "hold NaN"),
])
def test_public_binarize_refuses_what_is_not_grey_levels_in_one_sentence(x, message):
    import pyro_vae
    with pytest.raises(DataError, match=message):
        pyro_vae.binarize(x)


def test_public_binarize_draws_a_splits_byte_images_as_floats():
    import pyro_vae
    from pyro_vae.data.folders import ByteImages
    images = ByteImages(torch.tensor([[0, 255, 77]], dtype=torch.uint8))
    drawn = pyro_vae.binarize(images, torch.Generator().manual_seed(0))
    assert drawn.dtype == torch.float32 and drawn[0, 0] == 0 and drawn[0, 1] == 1

def _grey_folder(tmp_path):
    """An idx folder of 1,200 / 30 images whose pixels are all 77/255 (p = 0.302)."""
    folder = tmp_path / "grey"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", np.full((1200, 4, 4), 77, dtype=np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte", np.full((300, 4, 4), 77, dtype=np.uint8))
    return folder


def _mean_within_3se(images: torch.Tensor, p: float):
    assert set(images.unique().tolist()) <= {0.0, 1.0}
    assert abs(images.mean().item() - p) < 3 * math.sqrt(p * (1 - p) / images.numel())


def test_static_and_dynamic_binarization_draw_each_split_with_its_own_seed(tmp_path):
    folder, p = _grey_folder(tmp_path), 77 / 255
    static = load_dataset("idx", str(folder), "static", seed=5)
    for split in (static.train, static.valid, static.test):
        _mean_within_3se(split.images, p)
    assert torch.equal(static.train.images, load_dataset("idx", str(folder), "static", seed=5).train.images)
    assert not torch.equal(static.train.images, load_dataset("idx", str(folder), "static", seed=6).train.images)
    # Validation and test are different draws (test images are not validation images re-used).
    assert not torch.equal(static.valid.images[:200], static.test.images[:200])

    dynamic = load_dataset("idx", str(folder), "dynamic")  # a seed is refused: the trainer's draws the batches
    assert torch.equal(dynamic.train.images, torch.full_like(dynamic.train.images, p))  # drawn per batch
    _mean_within_3se(dynamic.valid.images, p)
    _mean_within_3se(dynamic.test.images, p)
    # Evaluation data are one fixed draw whatever the run's seed, so runs compare on the same images.
    other = load_dataset("idx", str(folder), "dynamic")
    assert torch.equal(dynamic.valid.images, other.valid.images) and torch.equal(dynamic.test.images, other.test.images)
    assert not torch.equal(dynamic.valid.images[:200], dynamic.test.images[:200])


def test_threshold_binarization_cuts_at_one_half(tmp_path):
    folder = tmp_path / "ramp"
    folder.mkdir()
    ramp = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(12, 0)
    write_idx(folder / "train-images-idx3-ubyte", ramp)
    write_idx(folder / "t10k-images-idx3-ubyte", ramp[:2])
    data = load_dataset("idx", str(folder), "threshold")
    for split in (data.train, data.valid, data.test):
        assert torch.equal(split.images.reshape(len(split), -1)[0], (torch.arange(256) >= 128).float())


def test_the_head_of_a_split_of_byte_images_stays_bytes_when_asked():
    from pyro_vae.data.folders import ByteImages

    data = torch.arange(5 * 4, dtype=torch.uint8).reshape(5, 1, 2, 2)
    split = datasets.Split(ByteImages(data, torch.tensor([4, 2, 0, 1])), torch.tensor([1, 2, 3, 4]),
                           names=("e", "c", "a", "b"))
    kept = split.head(2, keep_bytes=True)
    assert isinstance(kept.images, ByteImages) and len(kept.images) == 2
    assert torch.equal(kept.images[:], data[[4, 2]].float() / 255)
    assert kept.labels.tolist() == [1, 2] and kept.names == ("e", "c")
    floats = split.head(3)
    assert torch.is_tensor(floats.images) and torch.equal(floats.images, data[[4, 2, 0]].float() / 255)


def test_a_label_subset_as_small_as_the_number_of_classes_takes_one_of_each():
    labels = torch.tensor([2, 0, 1, 1, 0, 2, 2])
    chosen = datasets.balanced_label_subset(labels, 3, seed=0)
    assert sorted(labels[chosen].tolist()) == [0, 1, 2] and chosen.tolist() == sorted(chosen.tolist())
    for n in (2, 8):  # fewer than the classes, more than the examples
        with pytest.raises(datasets.DataError, match="--labels must be between"):
            datasets.balanced_label_subset(labels, n, seed=0)
    with pytest.raises(datasets.DataError, match="class 0 has only 2"):  # 7 = 3 + 2 + 2
        datasets.balanced_label_subset(labels, 7, seed=0)


def test_uneven_label_subsets_give_the_first_classes_one_more():
    labels = torch.arange(3).repeat(5)
    chosen = datasets.balanced_label_subset(labels, 5, seed=1)
    assert labels[chosen].bincount().tolist() == [2, 2, 1]


def test_class_names_of_the_named_data_sets():
    assert datasets.class_names("fashion-mnist")[1] == "Trouser" and len(datasets.class_names("fashion-mnist")) == 10
    assert datasets.class_names("mnist") == datasets.class_names("mnist-t10k") == tuple("0123456789")
    assert datasets.class_names("idx") == () and datasets.class_names("binarized-mnist") == ()


def test_moving_a_data_set_keeps_every_part_of_every_split():
    split = datasets.Split(torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0]), torch.tensor([[True], [False], [True]]),
                           ("a", "b", "c"))
    data = datasets.ImageDataset("toy", split, datasets.Split(torch.rand(2, 1, 2, 2)), split.head(1), "dynamic",
                                 ("x", "y"), ("smiling",))
    moved = data.to("cpu")
    for name in ("train", "valid", "test"):
        before, after = data.split(name), moved.split(name)
        assert torch.equal(before.images, after.images) and before.names == after.names
        for part in ("labels", "attributes"):
            assert (getattr(before, part) is None and getattr(after, part) is None) or \
                torch.equal(getattr(before, part), getattr(after, part))
    assert (moved.name, moved.binarize, moved.class_names, moved.attribute_names) == \
        ("toy", "dynamic", ("x", "y"), ("smiling",))


def test_an_idx_folder_is_checked_and_its_missing_file_named(tmp_path):
    with pytest.raises(datasets.DataError, match="does not exist"):
        load_dataset("idx", str(tmp_path / "nowhere"))
    folder = tmp_path / "half"
    folder.mkdir()
    write_idx(folder / "t10k-images-idx3-ubyte", _indexed_images(5, TEST))
    with pytest.raises(datasets.DataError, match="no train-images-idx3-ubyte"):
        load_dataset("idx", str(folder))
    write_idx(folder / "train-images-idx3-ubyte", _indexed_images(12, TRAIN))
    (folder / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(datasets.DataError, match="no t10k-images-idx3-ubyte"):
        load_dataset("idx", str(folder))


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist", "mnist-t10k", "binarized-mnist"])
@pytest.mark.parametrize("download", [True, False])
def test_named_data_sets_are_looked_up_where_asked_and_downloaded_only_if_allowed(monkeypatch, name, download):
    asked = []

    def locate(source, data_dir, allowed, roles=None, verified=True):
        asked.append((source.name, data_dir, allowed))
        raise datasets.DataError("stop here")

    monkeypatch.setattr(datasets, "locate", locate)
    with pytest.raises(datasets.DataError, match="stop here"):
        load_dataset(name, "/some/dir", download=download)
    assert asked == [({"mnist-t10k": "mnist"}.get(name, name), "/some/dir", download)]


def test_an_image_folder_binarized_at_load_gives_binary_images(tmp_path):
    from image_folders import class_folder

    from pyro_vae.data.folders import ByteImages

    class_folder(tmp_path, n=30)
    options = datasets.FolderOptions(size=8, mode="grey")
    plain = load_dataset("image-folder", str(tmp_path), folder=options)
    assert isinstance(plain.train.images, ByteImages)
    data = load_dataset("image-folder", str(tmp_path), binarize="static", folder=options)
    for name in ("train", "valid", "test"):
        images = datasets.as_tensor(data.split(name).images)  # kept as 0/1 bytes, read as floats
        assert images.dtype == torch.float32 and set(images.unique().tolist()) <= {0.0, 1.0}
        assert images.shape == plain.split(name).images.shape


def test_idx_labels_must_lie_below_the_number_of_classes():
    from pathlib import Path

    assert datasets._labels(np.array([0, 9], dtype=np.uint8), Path("l"), 2).tolist() == [0, 9]
    with pytest.raises(datasets.DataError, match=r"l has labels outside 0\.\.9\."):
        datasets._labels(np.array([0, 10], dtype=np.uint8), Path("l"), 2)


def test_a_train_limit_beyond_the_training_split_is_refused_not_ignored(tmp_path):
    folder = _idx_folder(tmp_path / "own", 1200, 30)  # 1,000 train, 200 valid
    assert len(load_dataset("idx", str(folder), train_limit=1000).train) == 1000
    with pytest.raises(DataError, match="--train-limit 1001 is more than the 1000 images"):
        load_dataset("idx", str(folder), train_limit=1001)
    with pytest.raises(DataError, match="positive count, not True"):
        load_dataset("idx", str(folder), train_limit=True)


def test_a_hand_built_data_set_with_a_misspelt_binarization_is_refused():
    """ImageDataset(..., binarize="dynamc") trained on the grey levels as given, as if "none":
    the trainer redraws batches only for "dynamic". fit and validate now refuse the name."""
    from pyro_vae import fit
    from pyro_vae.build import build_vae
    from pyro_vae.config import ModelConfig
    from pyro_vae.data.datasets import ImageDataset, Split

    images, binary = torch.rand(8, 1, 4, 4), torch.bernoulli(torch.full((8, 1, 4, 4), 0.5))
    data = ImageDataset("mine", Split(images), Split(binary), Split(binary), binarize="dynamc")
    with pytest.raises(DataError, match="'mine' has binarize='dynamc'; choose from none, dynamic, static, threshold"):
        data.validate()
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 4, 4))
    with pytest.raises(DataError, match="binarize='dynamc'"):
        fit(model, guide, data, epochs=1, log=lambda s: None, figures=False)
    data.binarize = "dynamic"
    assert fit(model, guide, data, epochs=1, log=lambda s: None, figures=False).history
