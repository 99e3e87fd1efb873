"""ImageDataset's and Split's methods on tiny hand-made splits (the mutation run found them
without a fast test): ``take``, ``head``, ``batches``, ``scored_split``, ``check_support``,
and an image folder's own checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from image_folders import celeba_folder
from pyro_vae.data.datasets import TRAIN_EVAL_BINARIZATION_SEED, ImageDataset, Split, load_dataset
from pyro_vae.data.folders import ByteImages
from pyro_vae.errors import DataError
from pyro_vae.likelihoods import make_likelihood


def _split(n: int, offset: float = 0.0, labels: bool = True) -> Split:
    """``n`` 1x2x2 images whose pixels all equal (i + offset) / 100 for image i: each image
    names its row. Labels i % 3, boolean attributes [i odd, i > 2], file names."""
    images = ((torch.arange(n, dtype=torch.float32) + offset) / 100).reshape(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    attributes = torch.stack([torch.arange(n) % 2 == 1, torch.arange(n) > 2], 1)
    return Split(images, torch.arange(n) % 3 if labels else None, attributes, tuple(f"img{i}" for i in range(n)))


def _ids(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 0, 0] * 100).round().long().tolist()


def _dataset(binarize: str = "none") -> ImageDataset:
    return ImageDataset("rows", _split(10), _split(4, 50), _split(3, 80), binarize=binarize)


def test_take_returns_the_rows_asked_for_in_that_order():
    taken = _split(6).take(torch.tensor([4, 0, 4, 2]))
    assert _ids(taken.images) == [4, 0, 4, 2]
    assert taken.labels.tolist() == [1, 0, 1, 2]
    assert taken.attributes.tolist() == [[False, True], [False, False], [False, True], [False, False]]
    assert taken.names == ("img4", "img0", "img4", "img2")
    bare = Split(_split(6).images).take(torch.tensor([5, 1]))
    assert _ids(bare.images) == [5, 1] and bare.labels is None and bare.attributes is None and bare.names == ()
    stored = ByteImages(torch.arange(6, dtype=torch.uint8).reshape(6, 1, 1, 1), scale=100.0)
    assert _ids(Split(stored).take(torch.tensor([3, 1])).images) == [3, 1]  # byte images too


@pytest.mark.parametrize("labels", [True, False])
def test_head_keeps_the_first_rows_of_every_part(labels):
    head = _split(6, labels=labels).head(4)
    assert _ids(head.images) == [0, 1, 2, 3] and head.names == ("img0", "img1", "img2", "img3")
    assert head.labels is None if not labels else head.labels.tolist() == [0, 1, 2, 0]
    assert head.attributes.tolist() == [[False, False], [True, False], [False, False], [True, True]]


def test_batches_of_a_split_in_order_or_shuffled_by_the_generator():
    data = _dataset()
    assert [_ids(b) for b in data.batches("valid", batch_size=3)] == [[50, 51, 52], [53]]  # in order, last smaller
    assert [_ids(b) for b in data.batches("test", batch_size=2, shuffle=False)] == [[80, 81], [82]]
    shuffled = [_ids(b) for b in data.batches("train", batch_size=4, generator=torch.Generator().manual_seed(3))]
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3)).tolist()
    assert shuffled == [order[:4], order[4:8], order[8:]] and order != sorted(order)  # train: shuffled by default
    assert [_ids(b) for b in data.batches("train", batch_size=10, shuffle=False)] == [list(range(10))]
    with pytest.raises(DataError, match="unknown split 'training'"):
        next(data.batches("training"))


@pytest.mark.parametrize("batch_size", [-1, 0, 2.5, True, "64"])
def test_batches_refuses_a_batch_size_that_is_not_a_positive_whole_number_when_called(batch_size):
    """batch_size=-1 gave no batch at all (a loop over them trained nothing, silently), 0 failed
    with range()'s "arg 3 must not be zero" and 2.5 with a TypeError, both at the first batch; now
    the call itself refuses each in one sentence naming batch_size."""
    data = _dataset()
    with pytest.raises(DataError, match=r"batch_size must be a whole number of at least 1, not "):
        data.batches("train", batch_size=batch_size)
    assert [len(b) for b in data.batches("train", batch_size=np.int64(4))] == [4, 4, 2]  # NumPy's ints are whole


def test_batches_of_a_dynamically_binarized_training_split_are_fresh_binary_draws():
    data = ImageDataset("grey", Split(torch.full((400, 1, 2, 2), 0.25)), Split(torch.full((3, 1, 2, 2), 0.25)),
                        Split(torch.full((3, 1, 2, 2), 0.25)), binarize="dynamic")
    generator = torch.Generator().manual_seed(0)
    first, second = list(data.batches("train", batch_size=200, generator=generator))
    for batch in (first, second):
        assert set(batch.unique().tolist()) == {0.0, 1.0}
        assert abs(batch.mean().item() - 0.25) < 4 * (0.25 * 0.75 / batch.numel()) ** 0.5  # Bernoulli(0.25)
    assert not torch.equal(first, second)
    assert torch.equal(next(data.batches("valid", batch_size=3)), torch.full((3, 1, 2, 2), 0.25))  # drawn at load
    # the draws come from the generator given, so a seed repeats them
    again = list(data.batches("train", batch_size=200, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(again[0], first) and torch.equal(again[1], second)


def test_scored_split_draws_the_dynamic_training_split_once_with_its_fixed_seed():
    grey = torch.rand(50, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    data = ImageDataset("grey", Split(grey, torch.arange(50) % 2), Split(grey[:5]), Split(grey[:6]), binarize="dynamic")
    scored = data.scored_split("train")
    want = torch.bernoulli(grey, generator=torch.Generator().manual_seed(TRAIN_EVAL_BINARIZATION_SEED))
    assert torch.equal(scored.images, want) and torch.equal(scored.labels, torch.arange(50) % 2)
    assert torch.equal(data.scored_split("train").images, want)  # the same draw every time
    assert data.scored_split("valid") is data.valid and data.scored_split("test") is data.test
    static = ImageDataset("grey", Split(grey), Split(grey[:5]), Split(grey[:6]), binarize="static")
    assert static.scored_split("train") is static.train  # drawn once at load already


def test_check_support_refuses_each_split_outside_the_likelihoods_support_by_name():
    bernoulli = make_likelihood("bernoulli", (1, 2, 2))
    binary = Split(torch.bernoulli(torch.full((5, 1, 2, 2), 0.5), generator=torch.Generator().manual_seed(0)))
    grey = Split(torch.full((5, 1, 2, 2), 0.5))
    ImageDataset("ok", binary, binary, binary).check_support(bernoulli)
    for name, parts in (("train", (grey, binary, binary)), ("valid", (binary, grey, binary)),
                        ("test", (binary, binary, grey))):
        with pytest.raises(DataError, match=rf"the {name} split of 'mixed' has grey-level pixels.*; use --binarize\.$"):
            ImageDataset("mixed", *parts).check_support(bernoulli, hint="use --binarize")
    # Dynamic binarization draws the training split in every batch: grey pixels are its input,
    # black and white ones included...
    ImageDataset("dyn", grey, binary, binary, binarize="dynamic").check_support(bernoulli)
    ImageDataset("dyn", binary, binary, binary, binarize="dynamic").check_support(bernoulli)
    # ...but they must lie in [0, 1] and be finite.
    for bad in (1.5, -0.1, float("nan")):
        split = Split(torch.full((5, 1, 2, 2), bad))
        with pytest.raises(DataError, match=r"the train split of 'dyn' needs pixel intensities in \[0, 1\]"):
            ImageDataset("dyn", split, binary, binary, binarize="dynamic").check_support(bernoulli)
    with pytest.raises(DataError, match=r"the valid split of 'dyn'"):
        ImageDataset("dyn", grey, grey, binary, binarize="dynamic").check_support(bernoulli)
    stored = ByteImages(torch.full((5, 1, 2, 2), 128, dtype=torch.uint8), scale=255.0)
    ImageDataset("bytes", Split(stored), binary, binary, binarize="dynamic").check_support(bernoulli)
    with pytest.raises(DataError, match=r"the test split of 'bytes'"):
        ImageDataset("bytes", binary, binary, Split(stored)).check_support(bernoulli)


def test_an_image_folder_that_does_not_exist_is_named_as_such(tmp_path):
    with pytest.raises(DataError, match=r"data directory .*missing does not exist; check --data-dir"):
        load_dataset("image-folder", str(tmp_path / "missing"))


def test_an_image_folder_whose_partition_leaves_validation_empty_is_refused_naming_that_split(tmp_path):
    celeba_folder(tmp_path, n=10)
    partition = tmp_path / "list_eval_partition.txt"
    partition.write_text(partition.read_text().replace(" 1\n", " 2\n"))
    with pytest.raises(DataError, match=r"^the valid split of .* would be empty \(10 readable images\)"):
        load_dataset("image-folder", str(tmp_path))


def test_without_class_names_the_labels_count_the_classes_and_negative_ones_are_refused():
    images = torch.rand(4, 1, 2, 2)
    split = Split(images, torch.tensor([0, 2, 1, 2]))
    assert ImageDataset("d", split, split, split).validate().class_names == ()
    bad = Split(images, torch.tensor([0, -1, 1, 2]))
    with pytest.raises(DataError, match=r"the valid split of 'd' has labels outside 0\.\.2\."):
        ImageDataset("d", split, bad, split).validate()
    for dtype in (torch.float32, torch.bool):
        with pytest.raises(DataError, match="labels must be whole numbers"):
            ImageDataset("d", split, Split(images, torch.tensor([0, 1, 1, 0]).to(dtype)), split).validate()


def test_dynamic_binarization_of_byte_images_still_checks_the_other_splits():
    # the training bytes are in [0, 1] by construction; the validation split is still checked
    data = ImageDataset("d", Split(ByteImages(torch.full((4, 1, 2, 2), 128, dtype=torch.uint8))),
                        Split(torch.full((4, 1, 2, 2), 0.5)), Split(torch.ones(4, 1, 2, 2)), binarize="dynamic")
    with pytest.raises(DataError, match="the valid split of 'd' has grey-level pixels"):
        data.check_support(make_likelihood("bernoulli", (1, 2, 2)))


@pytest.mark.parametrize("name", ["idx", "image-folder"])
def test_own_data_without_a_data_dir_is_refused_not_read_from_the_current_folder(name, tmp_path, monkeypatch):
    # data_dir="" was read as ".": a folder of images there became the data set without a word
    celeba_folder(tmp_path, n=30)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=rf"^'{name}' reads your own .*: give their folder as data_dir"):
        load_dataset(name)


@pytest.mark.parametrize("options, message", [
    (dict(mode="gray"), r"mode 'gray' is not one of 'rgb', 'grey'"),  # a KeyError from every image
    (dict(mode="RGB"), r"mode 'RGB' is not one of"),
    (dict(size=0), r"size must be a whole number of pixels from 4 to 1024, not 0"),  # loaded as 0 x 0 images
    (dict(size=-3), r"size must be .* not -3"),
    (dict(workers=-1), r"workers must be 0 .* not -1"),
])
def test_folder_options_out_of_range_are_refused_in_one_sentence(tmp_path, options, message):
    from pyro_vae.data.datasets import FolderOptions

    celeba_folder(tmp_path, n=30)
    with pytest.raises(DataError, match=message):
        load_dataset("image-folder", str(tmp_path), folder=FolderOptions(**options))


def test_dynamic_binarization_draws_validation_and_test_once_with_seeds_0_and_1(idx_dir):
    # as the module docstring and docs/design.md say (they said seed 0 for both)
    grey, binary = load_dataset("idx", str(idx_dir)), load_dataset("idx", str(idx_dir), binarize="dynamic")
    for split, seed in (("valid", 0), ("test", 1)):
        want = torch.bernoulli(grey.split(split).images[:], generator=torch.Generator().manual_seed(seed))
        assert torch.equal(binary.split(split).images[:], want)
