"""The conditional VAE p(x | z, y) p(z | y) with its guide q(z | x, y)."""

import json

import pyro
import pytest
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from conftest import FASHION_DIR, require_path
from pyro_vae.build import build_vae
from pyro_vae.cli import main
from pyro_vae.config import ModelConfig
from pyro_vae.data.datasets import load_dataset
from pyro_vae.inference.loglik import importance_log_likelihood
from pyro_vae.inference.objectives import elbo_terms, make_objective
from pyro_vae.inference.train import Trainer, TrainSettings, evaluate_elbo

CVAE = ModelConfig(model="cvae", latent_dim=3, hidden_dims=[64])


def test_traces_condition_on_the_label():
    model, guide = build_vae(CVAE, (1, 28, 28), num_classes=4)
    x, y = torch.bernoulli(torch.rand(5, 1, 28, 28)), torch.tensor([0, 1, 2, 3, 0])
    guide_trace = poutine.trace(guide).get_trace(x, y)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, y)
    sites = {n for n, s in model_trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}
    assert sites == {"z", "x"} and model_trace.nodes["x"]["is_observed"]
    # The label reaches both networks: another label, another code and another decoding.
    other = torch.tensor([1, 2, 3, 0, 1])
    assert not torch.allclose(guide.encode(x, y)[0], guide.encode(x, other)[0])
    z = torch.zeros(5, 3)
    assert not torch.allclose(model.decode_mean(z, y), model.decode_mean(z, other))


def test_conditional_prior_enters_the_kl_in_closed_form():
    model, guide = build_vae(ModelConfig(model="cvae", latent_dim=2, hidden_dims=[8], conditional_prior=True),
                             (1, 8, 8), num_classes=3)
    with torch.no_grad():
        model.prior_loc.copy_(torch.tensor([[0.0, 0.0], [2.0, -1.0], [0.5, 0.5]]))
    x, y = torch.rand(4, 1, 8, 8).round(), torch.tensor([0, 1, 2, 1])
    terms = elbo_terms(model, guide, x, y=y, analytic_kl=True)
    loc, scale = guide.encode(x, y)
    p_loc = model.prior_loc[y]
    p_scale = torch.nn.functional.softplus(model.prior_raw_scale[y]) + 1e-3
    by_hand = (torch.log(p_scale / scale) + (scale ** 2 + (loc - p_loc) ** 2) / (2 * p_scale ** 2) - 0.5).sum(-1)
    assert torch.allclose(terms.kl, by_hand, atol=1e-5)


def _brightest_quadrant(images):
    h = images.shape[-1] // 2
    quads = torch.stack([images[..., :h, :h].mean((-3, -2, -1)), images[..., :h, h:].mean((-3, -2, -1)),
                         images[..., h:, :h].mean((-3, -2, -1)), images[..., h:, h:].mean((-3, -2, -1))], -1)
    return quads.argmax(-1)


def test_samples_of_label_k_look_like_class_k(idx_dir):
    """The synthetic classes are bright squares in corner k; samples for label k must put it there."""
    pyro.set_rng_seed(0)
    data = load_dataset("idx", str(idx_dir), "dynamic")
    model, guide = build_vae(CVAE, data.image_shape, num_classes=4)
    Trainer(model, guide, make_objective("analytic-kl"), data, TrainSettings(epochs=5, batch_size=64,
            learning_rate=3e-3), progress=False, log=lambda s: None).fit()
    y = torch.arange(4).repeat_interleave(50)
    with torch.no_grad():
        samples = model.decode_mean(model.sample_prior(y), y)
    accuracy = (_brightest_quadrant(samples) == y).float().mean().item()
    # Chance is 0.25. The decoder shares the class information between y and z (z can carry
    # it from x at a small KL price), so not every sample follows its label after 5 epochs.
    assert accuracy > 0.6, accuracy
    # Held-out log p(x | y) with the true labels beats the same images under wrong labels.
    test = data.test.head(100)
    right = importance_log_likelihood(model, guide, test.images, k=50, y=test.labels).mean
    wrong = importance_log_likelihood(model, guide, test.images, k=50, y=(test.labels + 1) % 4).mean
    assert right > wrong + 5
    assert right > evaluate_elbo(model, guide, test.images, labels=test.labels, analytic_kl=True)["elbo"] - 1


def test_cvae_from_the_cli(idx_dir, tmp_path, capsys):
    run = tmp_path / "cvae"
    assert main(["train", "--model", "cvae", "--dataset", "idx", "--data-dir", str(idx_dir), "--run-dir", str(run),
                 "--latent-dim", "3", "--hidden-dims", "64", "--epochs", "2", "--batch-size", "64",
                 "--no-progress"]) == 0
    epoch_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    # the training ELBO, like the validation one, says what it bounds: log p(x | y), not log p(x)
    assert len(epoch_lines) == 2 and all("train ELBO of log p(x | y) " in line for line in epoch_lines)
    assert json.loads((run / "summary.json").read_text())["train_objective_name"] == "ELBO of log p(x | y)"
    assert main(["sample", str(run), "--label", "2", "-n", "16", "-o", str(tmp_path / "s.png")]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "62", "-o", str(tmp_path / "s62.png")]) == 2  # 4 equal rows: 60 or 64
    assert "give n (-n) 60 or 64" in capsys.readouterr().err and not (tmp_path / "s62.png").exists()
    assert main(["plot", str(run), "--kind", "samples", "-o", str(tmp_path / "s64.png")]) == 0  # the default: 64
    assert main(["plot", str(run), "--kind", "style", "-o", str(tmp_path / "style.png")]) == 0
    from matplotlib.image import imread

    style = imread(tmp_path / "style.png")
    assert style.shape[:2] == (700, 1100) and style[..., :3].std() > 0.05  # 5 rows (input + 4 classes)
    assert imread(tmp_path / "s.png")[..., :3].std() > 0.05
    # `plot --kind samples` takes --label as `sample` does (its -n refusal above names --label): the same figure
    assert main(["plot", str(run), "--kind", "samples", "--label", "2", "-n", "16", "-o", str(tmp_path / "p.png")]) == 0
    assert (imread(tmp_path / "p.png") == imread(tmp_path / "s.png")).all()
    capsys.readouterr()
    assert main(["plot", str(run), "--kind", "style", "--label", "2", "-o", str(tmp_path / "p2.png")]) == 2
    assert "--label has no effect with --kind style (it is for --kind samples)" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--k", "20", "--limit", "30"]) == 0
    assert json.loads((run / "loglik.json").read_text())["examples"] == 30
    capsys.readouterr()
    assert main(["plot", str(run), "--kind", "latent", "-o", str(tmp_path / "l.png")]) == 2
    assert "for --model cvae choose" in capsys.readouterr().err
    assert main(["sample", str(run), "--label", "12", "-o", str(tmp_path / "s12.png")]) == 2  # the four classes 0..3


def test_cvae_needs_labelled_data(tmp_path, capsys):
    from conftest import synthetic_images, write_idx

    folder = tmp_path / "unlabelled"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", synthetic_images(200)[0])
    write_idx(folder / "t10k-images-idx3-ubyte", synthetic_images(50)[0])
    assert main(["train", "--model", "cvae", "--dataset", "idx", "--data-dir", str(folder),
                 "--run-dir", str(tmp_path / "r")]) == 2
    assert "needs labelled data" in capsys.readouterr().err


def test_fashion_samples_are_recognised_as_their_class():
    """A classifier trained on real Fashion-MNIST labels the CVAE's samples of class k as k."""
    require_path(FASHION_DIR / "train-images-idx3-ubyte.gz", "Fashion-MNIST (Debian's dataset-fashion-mnist)")
    pyro.set_rng_seed(0)
    data = load_dataset("fashion-mnist", binarize="dynamic", train_limit=20_000)
    model, guide = build_vae(ModelConfig(model="cvae", latent_dim=10, hidden_dims=[256], conditional_prior=True),
                             data.image_shape, 10)
    Trainer(model, guide, make_objective("analytic-kl"), data, TrainSettings(epochs=3), progress=False,
            log=lambda s: None).fit()
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                     torch.nn.Linear(256, 10))
    optimizer = torch.optim.Adam(classifier.parameters(), 1e-3)
    images, labels = data.train.images, data.train.labels
    for _ in range(2):
        for start in range(0, len(images), 128):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(classifier(images[start:start + 128]),
                                              labels[start:start + 128]).backward()
            optimizer.step()
    with torch.no_grad():
        real_accuracy = (classifier(data.test.images).argmax(-1) == data.test.labels).float().mean().item()
        y = torch.arange(10).repeat_interleave(100)
        samples = model.decode_mean(model.sample_prior(y), y)
        accuracy = (classifier(samples).argmax(-1) == y).float().mean().item()
    assert real_accuracy > 0.8
    # Chance is 0.1; measured 0.47 after 3 epochs on 20,000 images (see the issue note: the
    # decoder under-uses y when z can carry the class, a known CVAE weakness still to improve).
    assert accuracy > 0.3, accuracy


class _CountingConditionalModel:
    """A stand-in conditional decoder (10 classes) that records every label it decodes."""

    num_classes, latent_dim = 10, 2

    def __init__(self):
        self.labels = []

    def sample_prior(self, y):
        return torch.zeros(len(y), self.latent_dim)

    def decode_mean(self, z, y):
        self.labels.append(y.clone())
        return torch.rand(len(y), 1, 4, 4)


def test_conditional_samples_are_exactly_n_in_equal_rows_or_refused(tmp_path):
    """`sample -n 64` on a 10-class model drew ceil(64/10)*10 = 70 images; now n is exact:
    a multiple of the classes (one equal row per class), 64 refused naming 60 and 70, the
    default 60, and with one label n of it."""
    from pyro_vae.errors import ConfigError
    from pyro_vae.plots import plot_samples

    for n, drawn in ((30, 30), (None, 60)):
        model = _CountingConditionalModel()
        plot_samples(model, tmp_path / "s.png", n=n)
        labels = torch.cat(model.labels)
        assert len(labels) == drawn and labels.bincount(minlength=10).tolist() == [drawn // 10] * 10
    model = _CountingConditionalModel()
    with pytest.raises(ConfigError, match=r"64 is not a multiple of its 10 classes; give n \(-n\) 60 or 70"):
        plot_samples(model, tmp_path / "r.png", n=64)
    assert model.labels == [] and not (tmp_path / "r.png").exists()
    with pytest.raises(ConfigError, match=r"give n \(-n\) 10, or one label"):
        plot_samples(model, tmp_path / "r.png", n=7)
    plot_samples(model, tmp_path / "s.png", n=64, label=3)
    assert torch.cat(model.labels).tolist() == [3] * 64
