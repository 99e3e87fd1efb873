"""benchmarks/pyro_ss_vae_m2.py runs Pyro's ss_vae_M2.py example on our data: its stand-in for
torchvision's MNIST class must hand the example the images and labels our loader reads, and
its reading of the example's log must take the numbers the example prints."""

import sys
from pathlib import Path

import torch

from conftest import FASHION_DIR, require_path
from pyro_vae.data.datasets import as_tensor, load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pyro_ss_vae_m2 as adapter  # noqa: E402


def test_the_example_log_is_read_as_the_example_prints_it():
    # The example's own formats (ss_vae_M2.py, Pyro 1.9.1): losses of the ELBO and the auxiliary loss on
    # the labelled and unlabelled batches, then validation and test accuracy; the last line after training.
    lines = []
    for i, (valid, test) in enumerate([(0.4472, 0.4573), (0.6501, 0.6475), (0.6083, 0.6004)]):
        losses = "{} {}".format(" ".join(map(str, [527.9, 107.7])), " ".join(map(str, [314.4, 0.0])))
        line = "{} epoch: avg losses {}".format(i, losses)
        line += " validation accuracy {}".format(valid)
        line += " test accuracy {}".format(test)
        lines.append(line)
    lines.append("best validation accuracy {} corresponding testing accuracy {} last testing accuracy {}".format(
        0.6501, 0.6475, 0.6004))
    parsed = adapter.parse_log("\n".join(lines))
    assert [e["epoch"] for e in parsed["epochs"]] == [1, 2, 3]
    assert parsed["epochs"][1] == {"epoch": 2, "losses": [527.9, 107.7, 314.4, 0.0], "valid_accuracy": 0.6501,
                                   "test_accuracy": 0.6475}
    assert (parsed["best_valid_accuracy"], parsed["test_accuracy_at_best_valid"], parsed["last_test_accuracy"]) \
        == (0.6501, 0.6475, 0.6004)
    assert parsed["best_epoch"] == 2  # the example counts from 0: its epoch 1
    assert abs(parsed["test_accuracy_at_best_valid_stderr"] - (0.6475 * 0.3525 / 10000) ** 0.5) < 1e-12


def test_the_example_is_refused_a_batch_that_does_not_divide_its_labels():
    try:
        adapter.example_args(["-sup", "100", "-bs", "200"])
    except SystemExit as stop:
        assert "is not a multiple of -bs 200" in str(stop)
    else:
        raise AssertionError("-sup 100 -bs 200 was accepted")
    assert adapter.example_args(["-sup", "100", "-bs", "100", "-n", "9"]).num_epochs == 9


def test_a_batch_that_does_not_divide_a_split_is_refused_as_the_example_refuses_it():
    class Sizes:  # the example's MNISTCached sizes
        train_data_size, validation_size, test_size = 50000, 10000, 10000

    adapter.check_batch_divides(100, Sizes)
    try:
        adapter.check_batch_divides(300, Sizes)  # divides none of them
    except SystemExit as stop:
        assert "-bs 300 does not divide the 50000 training images" in str(stop)
    else:
        raise AssertionError("-bs 300 was accepted")


def test_the_seed_and_log_file_are_refused_after_the_separator(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["pyro_ss_vae_m2.py", "--pyro", str(tmp_path), "--out", str(tmp_path / "r.json"),
                                      "--", "-n", "1", "--seed", "3"])
    try:
        adapter.main()
    except SystemExit as stop:
        assert "give --seed to this script" in str(stop)
    else:
        raise AssertionError("an example --seed that would be overridden was accepted")


def test_the_stand_in_gives_the_example_the_images_and_labels_our_loader_reads():
    require_path(FASHION_DIR / "train-images-idx3-ubyte.gz", "Fashion-MNIST (Debian's dataset-fashion-mnist)")
    images_class = adapter.idx_dataset("fashion-mnist", None)
    train, test = images_class(train=True), images_class(train=False)
    ours = load_dataset("fashion-mnist")
    # torchvision's layout: uint8 [N, 28, 28] and int64 labels; the example takes the last 10,000 training
    # images for validation, which are our validation split (our train split is the first 50,000).
    assert train.data.dtype == torch.uint8 and train.data.shape == (60000, 28, 28)
    assert train.targets.dtype == torch.int64 and test.data.shape == (10000, 28, 28)
    ours_train = torch.cat([as_tensor(ours.train.images), as_tensor(ours.valid.images)])
    assert torch.equal(train.data.float().div(255).unsqueeze(1), ours_train)
    assert torch.equal(train.targets, torch.cat([ours.train.labels, ours.valid.labels]))
    assert torch.equal(test.data.float().div(255).unsqueeze(1), as_tensor(ours.test.images))
    assert torch.equal(test.targets, ours.test.labels)
