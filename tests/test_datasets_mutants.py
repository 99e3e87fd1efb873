"""Data-set behaviour that the full mutation run (sixth session) found without a fast test:
each test kills named survivors of ``src/pyro_vae/data/datasets.py`` (listed in
docs/mutation-survivors-train-datasets.md), on tiny synthetic files or hand-made splits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import write_idx
from image_folders import celeba_folder
from pyro_vae.data import datasets
from pyro_vae.data.datasets import DIGIT_CLASSES, ImageDataset, Split, load_dataset
from pyro_vae.data.folders import ByteImages
from pyro_vae.data.sources import FASHION_MNIST, MNIST, content_sha256
from pyro_vae.errors import DataError
from pyro_vae.likelihoods import make_likelihood


def _idx_folder(folder, train: np.ndarray, test: np.ndarray):
    """MNIST-named IDX files holding ``train`` and ``test`` (uint8 [N, H, W]), labels i % 10."""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", train)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(len(train)) % 10)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(len(test)) % 10)
    return folder


def _trust_mnist(monkeypatch, folder):
    """MNIST's source with the synthetic files' checksums, so the real lookup accepts them."""
    files = {role: dataclasses.replace(spec, sha256=content_sha256(folder / spec.name))
             for role, spec in MNIST.files.items()}
    monkeypatch.setattr(datasets, "MNIST", dataclasses.replace(MNIST, files=files))


def _rows(n):
    """Distinct 1x2x2 byte images: image i holds (i // 256, i % 256, 0, 0)."""
    i = np.arange(n)
    return np.stack([i // 256, i % 256, 0 * i, 0 * i], 1).reshape(n, 2, 2).astype(np.uint8)


def test_mnist_t10k_keeps_every_splits_labels_and_each_named_set_its_class_names(tmp_path, monkeypatch):
    # mnist-t10k: load_dataset #96 (labels dropped); mnist: load_dataset #43 (Fashion-MNIST's names).
    folder = _idx_folder(tmp_path, _rows(12), _rows(10_000))
    _trust_mnist(monkeypatch, folder)
    t10k = load_dataset("mnist-t10k", str(folder), download=False)
    for split, first, stop in ((t10k.train, 0, 7000), (t10k.valid, 7000, 8000), (t10k.test, 8000, 10_000)):
        assert split.labels is not None and split.labels.tolist() == [i % 10 for i in range(first, stop)]
    assert t10k.class_names == DIGIT_CLASSES
    mnist = load_dataset("mnist", str(folder), download=False)
    assert mnist.class_names == DIGIT_CLASSES == tuple("0123456789")
    # load_dataset #46 ("FASHION-MNIST" compared): Fashion-MNIST named with digits.
    files = {role: dataclasses.replace(spec, sha256=content_sha256(folder / spec.name))
             for role, spec in FASHION_MNIST.files.items()}
    monkeypatch.setattr(datasets, "FASHION_MNIST", dataclasses.replace(FASHION_MNIST, files=files))
    fashion = load_dataset("fashion-mnist", str(folder), download=False)
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"


def test_the_test_split_of_dynamic_binarization_is_drawn_apart_from_validation_and_the_scored_training_split(tmp_path):
    # load_dataset #215: the test split drawn with the seed the training split is scored with.
    grey = np.full((12, 8, 8), 128, dtype=np.uint8)  # 10 train, 2 valid; 10 test: all pixels 128/255
    data = load_dataset("idx", str(_idx_folder(tmp_path, grey, grey[:10])), binarize="dynamic")
    scored_train, valid, test = (data.scored_split(name).images[:] for name in ("train", "valid", "test"))
    assert set(test.unique().tolist()) == {0.0, 1.0}
    # Equal grey images: the same seed would give the same binary images; 2 x 64 pixels at p ~ 1/2.
    assert not torch.equal(test[:2], valid)
    assert not torch.equal(test, scored_train)
    assert not torch.equal(valid, scored_train[:2])


def test_a_binarized_split_is_held_as_one_byte_per_pixel(tmp_path):
    # _binarize #22: the binary draw kept as float32 (four times the memory the module promises).
    grey = np.full((12, 8, 8), 100, dtype=np.uint8)
    for how in ("static", "threshold", "dynamic"):
        data = load_dataset("idx", str(_idx_folder(tmp_path / how, grey, grey)), binarize=how,
                            seed=3 if how == "static" else 0)
        for name in ("valid", "test") + (("train",) if how != "dynamic" else ()):
            images = data.split(name).images
            assert isinstance(images, ByteImages) and images.data.element_size() == 1, (how, name)
            assert images.data.dtype == torch.uint8 and set(images[:].unique().tolist()) <= {0.0, 1.0}


def test_labels_without_class_names_are_checked_against_their_own_range():
    # validate #45 (max - 1 classes) and #46 (int(None)): a Python data set with labels 0..2 and no names.
    def data(labels):
        return ImageDataset("labels", Split(torch.rand(3, 1, 2, 2), labels), Split(torch.rand(2, 1, 2, 2)),
                            Split(torch.rand(2, 1, 2, 2)))

    assert data(torch.tensor([0, 2, 1])).validate().train.labels.tolist() == [0, 2, 1]
    assert data(torch.tensor([0, 0, 0])).validate() is not None  # one class
    with pytest.raises(DataError, match=r"^the train split of 'labels' has labels outside 0..2\.$"):
        data(torch.tensor([0, 2, -1])).validate()
    # validate #41 (`and` for `or`): float or boolean labels let through.
    for labels in (torch.tensor([0.0, 2.0, 1.0]), torch.tensor([True, False, True])):
        with pytest.raises(DataError, match=rf"^the train split of 'labels' has {labels.dtype} labels; labels must "
                                            r"be whole numbers\.$"):
            data(labels).validate()


def test_the_same_generator_seed_gives_the_same_dynamically_binarized_batches():
    # batches #46: the Bernoulli draws taken from torch's global RNG instead of the generator.
    images = torch.full((10, 1, 4, 4), 0.5)
    data = ImageDataset("grey", Split(images), Split(images[:2]), Split(images[:2]), binarize="dynamic")

    def draw():
        return torch.cat(list(data.batches("train", 4, generator=torch.Generator().manual_seed(11))))

    first = draw()
    torch.rand(100)  # the global RNG moves between the two passes
    assert torch.equal(first, draw())
    assert not torch.equal(first, torch.cat(list(data.batches("train", 4, generator=torch.Generator().manual_seed(12)))))


def test_dynamic_binarization_of_byte_training_images_still_checks_the_other_splits():
    # check_support #17: a byte training split skipped, and the loop left before valid and test.
    train = ByteImages(torch.full((4, 1, 2, 2), 200, dtype=torch.uint8))
    good, bad = torch.full((2, 1, 2, 2), 1.0), torch.full((2, 1, 2, 2), 0.5)
    bernoulli = make_likelihood("bernoulli", (1, 2, 2))
    ok = ImageDataset("bytes", Split(train), Split(good), Split(good), binarize="dynamic")
    ok.check_support(bernoulli)
    for name in ("valid", "test"):
        splits = {"valid": Split(good), "test": Split(good), name: Split(bad)}
        data = ImageDataset("bytes", Split(train), splits["valid"], splits["test"], binarize="dynamic")
        with pytest.raises(DataError, match=rf"the {name} split of 'bytes'"):
            data.check_support(bernoulli)


def test_moving_a_split_moves_its_attributes_too():
    # Split.to #10: attributes left behind. The meta device shows the move on a CPU-only machine.
    split = Split(torch.rand(3, 1, 2, 2), torch.arange(3), torch.tensor([[True], [False], [True]]), ("a", "b", "c"))
    moved = split.to("meta")
    assert moved.images.device.type == moved.labels.device.type == moved.attributes.device.type == "meta"
    assert moved.attributes.shape == (3, 1) and moved.names == ("a", "b", "c")


@pytest.mark.parametrize("split,code", [("train", 0), ("test", 2)])
def test_an_image_folder_whose_partition_leaves_a_split_empty_is_refused_naming_that_split(tmp_path, split, code):
    # _folder_splits #31 and #35: the split's name in the message.
    celeba_folder(tmp_path, n=10)
    partition = tmp_path / "list_eval_partition.txt"
    partition.write_text(partition.read_text().replace(f" {code}\n", " 1\n"))
    with pytest.raises(DataError, match=rf"^the {split} split of .* would be empty \(10 readable images\)"):
        load_dataset("image-folder", str(tmp_path))


def test_an_image_folder_is_decoded_once_into_the_cache_folder_asked_for(tmp_path):
    # _folder_splits #9: the cache folder not passed on (decoded into memory every time).
    from pyro_vae.data.datasets import FolderOptions

    celeba_folder(tmp_path / "faces", n=12)
    cache = tmp_path / "cache"
    first = load_dataset("image-folder", str(tmp_path / "faces"), folder=FolderOptions(size=8, cache_dir=cache))
    cached = [path for path in cache.rglob("*") if path.is_file()]
    assert cached and sum(path.stat().st_size for path in cached) >= 12 * 3 * 8 * 8  # the decoded bytes
    again = load_dataset("image-folder", str(tmp_path / "faces"), folder=FolderOptions(size=8, cache_dir=cache))
    assert torch.equal(again.train.images[:], first.train.images[:])


def test_loading_idx_files_copies_their_bytes_into_writable_memory(tmp_path):
    # _to_images #38 (copy=False): the tensor would share the reader's read-only buffer (torch warns).
    import warnings

    folder = _idx_folder(tmp_path, _rows(12), _rows(6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_dataset("idx", str(folder))
    data.train.images.data[0, 0, 0, 0] = 7  # the loaded bytes are the data set's own
    assert data.train.images[:1].mul(255).round()[0, 0, 0, 0] == 7


def test_batches_default_to_the_training_split_as_the_trainer_sees_it():
    # batches #2: the default split "TRAIN" (unknown).
    images = torch.full((6, 1, 2, 2), 0.5)
    data = ImageDataset("grey", Split(images), Split(images[:2] * 0), Split(images[:2] * 0), binarize="dynamic")
    batches = list(data.batches(batch_size=4, generator=torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 2]
    assert set(torch.cat(batches).unique().tolist()) == {0.0, 1.0}  # the training split, drawn as 0/1
    # batches #3: the default batch size 128 (129).
    many = ImageDataset("grey", Split(torch.full((130, 1, 2, 2), 0.5)), Split(images[:2]), Split(images[:2]))
    assert [len(b) for b in many.batches()] == [128, 2]


def test_a_label_file_with_a_label_past_the_last_class_is_refused_by_its_name(tmp_path, monkeypatch):
    # _labels #11 (> instead of >=): label 10 of MNIST's ten classes passed the file's check; the
    # data set's check refuses it later, naming a split instead of the file to fix.
    folder = _idx_folder(tmp_path, _rows(12), _rows(6))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 9, 10, 3]))
    _trust_mnist(monkeypatch, folder)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz has labels outside 0\.\.9\.$"):
        load_dataset("mnist", str(folder), download=False)


def test_binarized_mnist_is_named_and_has_no_class_names(tmp_path, monkeypatch):
    # load_dataset #146: None instead of the empty tuple every other unlabelled set has.
    from pyro_vae.data.sources import BINARIZED_MNIST

    for role in ("train_images", "valid_images", "test_images"):
        (tmp_path / BINARIZED_MNIST.files[role].name).write_text(("0 1 " * 392).strip() + "\n")
    files = {role: dataclasses.replace(spec, sha256=content_sha256(tmp_path / spec.name))
             for role, spec in BINARIZED_MNIST.files.items()}
    monkeypatch.setattr(datasets, "BINARIZED_MNIST", dataclasses.replace(BINARIZED_MNIST, files=files))
    data = load_dataset("binarized-mnist", str(tmp_path), download=False)
    assert data.class_names == () and data.train.labels is None
    assert data.name == "binarized-mnist"  # load_dataset #216: the data set named None
    assert data.attribute_names == ()  # load_dataset #7: None for every set but image folders


def test_the_python_api_looks_in_the_usual_places_and_downloads_a_missing_named_data_set_by_default(monkeypatch):
    # load_dataset #6 (the default download=False) and #1 (a default data folder "XXXX").
    asked = []

    def locate(source, data_dir, allowed, roles=None, verified=True):
        asked.append((data_dir, allowed))
        raise DataError("stop here")

    monkeypatch.setattr(datasets, "locate", locate)
    with pytest.raises(DataError, match="stop here"):
        load_dataset("fashion-mnist")
    assert asked == [(None, True)]


def test_a_label_file_of_another_length_than_its_images_is_refused_by_its_name(tmp_path):
    # _labels #2 (`and` for `or`): a 1-D label file of the wrong length passed, to be refused later by split name.
    folder = _idx_folder(tmp_path, _rows(12), _rows(6))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(5))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz has 5 labels for 6 images"):
        load_dataset("idx", str(folder))


def test_an_image_file_holding_no_images_is_refused_by_its_name(tmp_path):
    # _to_images #22 (shape[1] for shape[0]): an empty file passed, to be refused later by split name.
    folder = _idx_folder(tmp_path, _rows(12), _rows(6))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((0, 2, 2), dtype=np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(0, dtype=np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz holds no images of shape \[N, H, W\]"):
        load_dataset("idx", str(folder))


def test_an_image_file_of_flat_rows_is_refused_by_its_name(tmp_path):
    # _idx_splits #9: the image file read without its rank; [N, 4] rows would pass as 2 x 2 images.
    folder = _idx_folder(tmp_path, _rows(12), _rows(6))
    write_idx(folder / "train-images-idx3-ubyte.gz", _rows(12).reshape(12, 4))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz"):
        load_dataset("idx", str(folder))


def test_an_image_folder_with_an_unreadable_file_loads_the_others_when_asked(tmp_path):
    # _folder_splits #17: skip_bad not passed on (the progress flag in its place).
    from pyro_vae.data.datasets import FolderOptions

    celeba_folder(tmp_path, n=10)
    (tmp_path / "img_align_celeba" / "000002.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"cannot be read: .*000002\.jpg"):
        load_dataset("image-folder", str(tmp_path), folder=FolderOptions(size=8))
    data = load_dataset("image-folder", str(tmp_path), folder=FolderOptions(size=8, skip_bad=True))
    assert len(data.train) + len(data.valid) + len(data.test) == 9 and "000002.jpg" not in data.train.names


def test_an_image_folder_shows_its_decoding_progress_when_asked(tmp_path, capsys):
    # _folder_splits #11: the progress flag not passed on.
    from pyro_vae.data.datasets import FolderOptions

    celeba_folder(tmp_path, n=10)
    load_dataset("image-folder", str(tmp_path), folder=FolderOptions(size=8))
    assert "decoding" not in capsys.readouterr().err
    load_dataset("image-folder", str(tmp_path), folder=FolderOptions(size=8, progress=True))
    assert "decoding 10 images" in capsys.readouterr().err


def test_an_idx_folder_with_label_files_is_labelled(tmp_path):
    # load_dataset #157: the folder's labels dropped (its classes named all the same).
    data = load_dataset("idx", str(_idx_folder(tmp_path, _rows(12), _rows(6))))
    assert data.train.labels.tolist() == [i % 10 for i in range(10)]
    assert data.valid.labels.tolist() == [0, 1] and data.test.labels.tolist() == [i % 10 for i in range(6)]


def test_an_image_file_of_one_image_is_a_split_of_one(tmp_path):
    # _to_images #24 (shape[0] == 1 refused).
    data = load_dataset("idx", str(_idx_folder(tmp_path, _rows(12), _rows(1))))
    assert len(data.test) == 1 and data.test.labels.tolist() == [0]


def test_mnist_t10k_needs_only_the_mnist_test_files(tmp_path, monkeypatch):
    # load_dataset #58: every MNIST file looked up (the training files too) for mnist-t10k.
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", _rows(10_000))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(10_000) % 10)
    files = {role: dataclasses.replace(spec, sha256=content_sha256(tmp_path / spec.name))
             for role, spec in MNIST.files.items() if role.startswith("test")}
    monkeypatch.setattr(datasets, "MNIST", dataclasses.replace(MNIST, files={**MNIST.files, **files}))
    from pyro_vae.data import sources

    # no other copy of MNIST's files anywhere the lookup searches
    monkeypatch.delenv("PYRO_VAE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(sources, "DEBIAN_ROOT", tmp_path / "no-system-copy")
    data = load_dataset("mnist-t10k", str(tmp_path), download=False)
    assert (len(data.train), len(data.valid), len(data.test)) == (7000, 1000, 2000)


def test_static_binarization_draws_validation_and_test_with_the_runs_seed(tmp_path):
    # load_dataset #188: validation and test drawn with the fixed evaluation seed whatever the run's seed.
    grey = np.full((12, 8, 8), 128, dtype=np.uint8)
    folder = _idx_folder(tmp_path, grey, grey[:6])

    def draws(seed):
        data = load_dataset("idx", str(folder), binarize="static", seed=seed)
        return data.valid.images[:], data.test.images[:]

    assert all(torch.equal(a, b) for a, b in zip(draws(3), draws(3)))
    assert not any(torch.equal(a, b) for a, b in zip(draws(3), draws(4)))


def test_static_binarization_draws_each_split_from_its_own_stream(tmp_path):
    # Identical grey images in every split: with one seed for training and validation, image i
    # of both got the same uniforms, so the same 0/1 pixels.
    grey = np.full((12, 8, 8), 128, dtype=np.uint8)
    folder = _idx_folder(tmp_path, grey, grey[:6])
    data = load_dataset("idx", str(folder), binarize="static", seed=0)
    train, valid, test = (split.images[:].flatten(1) for split in (data.train, data.valid, data.test))
    rows = min(len(train), len(valid), len(test))
    assert not torch.equal(train[:rows], valid[:rows])
    assert not torch.equal(valid[:rows], test[:rows]) and not torch.equal(train[:rows], test[:rows])


@pytest.mark.parametrize("missing, present", [("t10k-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz"),
                                              ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz")])
def test_an_idx_folder_with_one_label_file_of_two_is_refused_naming_both(tmp_path, missing, present):
    # _own_idx_paths #42 (`or`): labelled with the test labels missing (a KeyError, not a data set).
    # It was then read as unlabelled, the one label file dropped without a word.
    folder = _idx_folder(tmp_path, _rows(12), _rows(6))
    (folder / f"{missing}.gz").unlink()
    with pytest.raises(DataError, match=rf"has {present} but no {missing}\[\.gz\]; add it for labelled data, or "
                                        rf"move {present} out of the folder for unlabelled images"):
        load_dataset("idx", str(folder))


def test_a_label_subset_may_take_every_member_of_a_class():
    # balanced_label_subset #24 (`<=`): a class with exactly as many examples as asked refused.
    from pyro_vae.data.datasets import balanced_label_subset

    labels = torch.tensor([0, 1, 0, 1, 1])  # class 0 has two examples, and two per class are asked for
    chosen = balanced_label_subset(labels, 4, seed=0)
    assert labels[chosen].bincount().tolist() == [2, 2] and {0, 2} <= set(chosen.tolist())


def test_a_label_file_of_floats_is_refused_not_cut_to_whole_numbers(tmp_path):
    folder = _idx_folder(tmp_path, _rows(12), _rows(6))
    labels = np.array([0.5, 1.5, 2.5, 3.5, 4.5, 5.5], dtype=">f4")  # IDX type 0x0D, one dimension
    (folder / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 0x0D, 1]) + (6).to_bytes(4, "big")
                                                    + labels.tobytes())
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte holds >f4 labels; labels must be whole"):
        load_dataset("idx", str(folder))


def test_an_idx_folder_of_more_than_ten_classes_keeps_them_all(tmp_path):
    # Own IDX files (EMNIST letters, KMNIST-49) were refused as "labels outside 0..9".
    folder = _idx_folder(tmp_path, _rows(30), _rows(6))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(30) % 26)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([0, 5, 25, 3, 2, 1]))
    data = load_dataset("idx", str(folder))
    assert data.class_names == tuple(str(c) for c in range(26))
    assert data.test.labels.tolist() == [0, 5, 25, 3, 2, 1]
    from pyro_vae.runs import num_classes

    assert num_classes(data) == 26


def test_an_idx_folder_whose_test_labels_leave_the_training_classes_is_refused(tmp_path):
    folder = _idx_folder(tmp_path, _rows(12), _rows(6))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 4, 12]))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz has class 12, which no training label .* run to 9"):
        load_dataset("idx", str(folder))
