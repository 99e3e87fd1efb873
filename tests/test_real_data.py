"""On the real data sets (present in CI): they load with their documented splits, and one
epoch on Fashion-MNIST beats the untrained model by a clear margin."""

import pyro
import torch

from conftest import FASHION_DIR, SHARED_DATA, require_path
from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.data.datasets import as_tensor, load_dataset
from pyro_vae.data.sources import MNIST, locate
from pyro_vae.inference.objectives import make_objective
from pyro_vae.inference.train import Trainer, TrainSettings, evaluate_elbo


def test_one_epoch_on_fashion_mnist_beats_the_untrained_model():
    require_path(FASHION_DIR / "train-images-idx3-ubyte.gz", "Fashion-MNIST (Debian's dataset-fashion-mnist)")
    pyro.set_rng_seed(0)
    data = load_dataset("fashion-mnist", binarize="dynamic")
    assert (len(data.train), len(data.valid), len(data.test)) == (50_000, 10_000, 10_000)
    assert data.train.labels.bincount().min() > 4500 and data.class_names[0] == "T-shirt/top"
    model, guide = build_vae(ModelConfig(), data.image_shape)
    before = evaluate_elbo(model, guide, data.valid.images, analytic_kl=True)["elbo"]
    Trainer(model, guide, make_objective("analytic-kl"), data, TrainSettings(epochs=1),
            progress=False, log=lambda s: None).fit()
    after = evaluate_elbo(model, guide, data.valid.images, analytic_kl=True)["elbo"]
    assert before < -500 and after > -275 and after > before + 250, (before, after)


def test_binarized_mnist_split_loads_and_verifies():
    require_path(SHARED_DATA / "binarized_mnist" / "binarized_mnist_test.amat.gz", "static binarized MNIST")
    data = load_dataset("binarized-mnist", str(SHARED_DATA))
    assert (len(data.train), len(data.valid), len(data.test)) == (50_000, 10_000, 10_000)
    assert data.image_shape == (1, 28, 28)
    assert data.test.images.data.dtype == torch.uint8  # held as bytes until a batch is drawn
    values = as_tensor(data.test.images).unique()
    assert torch.equal(values, torch.tensor([0.0, 1.0]))
    # About 13% of binarized MNIST pixels are on.
    assert 0.12 < as_tensor(data.train.images).mean().item() < 0.15


def test_genuine_mnist_test_files_verify():
    require_path(SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz", "the MNIST test set")
    paths = locate(MNIST, SHARED_DATA, download=False, roles=("test_images", "test_labels", "train_labels"))
    assert paths["test_images"].parent.name == "mnist"


def test_mnist_test_set_split_for_real_digits():
    require_path(SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz", "the MNIST test set")
    data = load_dataset("mnist-t10k", str(SHARED_DATA), "dynamic")
    assert (len(data.train), len(data.valid), len(data.test)) == (7000, 1000, 2000)
    assert data.class_names[3] == "3" and data.test.labels.bincount().min() > 150
    # The three parts are disjoint slices of the same 10,000 images.
    assert not torch.equal(data.train.images[-1], data.valid.images[0])
