"""M1+M2: M2 on the standardized active codes of a VAE (pyro_vae.inference.codes)."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_vae.build import build_vae
from pyro_vae.config import Config, ModelConfig
from pyro_vae.data.datasets import ImageDataset, Split
from pyro_vae.errors import ConfigError
from pyro_vae.inference.codes import CodeScaler, code_dataset, posterior_means
from pyro_vae.inference.semisupervised import tuned_supervised_baseline


def test_scaler_keeps_the_active_units_and_standardizes_them():
    # unit 0 varies (var 1.0), unit 1 is almost constant (var 1e-4), unit 2 varies (var 4.0)
    means = torch.tensor([[-1.0, 0.50, 2.0], [1.0, 0.51, -2.0], [0.0, 0.49, 0.0]])
    scaler = CodeScaler.fit(means)
    assert scaler.active.tolist() == [True, False, True]
    codes = scaler(means)
    # by hand: unit 0 mean 0 std 1; unit 2 mean 0 std 2
    assert torch.allclose(codes, torch.tensor([[-1.0, 1.0], [1.0, -1.0], [0.0, 0.0]]))
    back = scaler.invert(codes)
    # the inactive unit at its training mean, 0.5, the value M1's decoder saw it take (not 0)
    assert torch.allclose(back[:, [0, 2]], means[:, [0, 2]]) and torch.allclose(back[:, 1], torch.full((3,), 0.5))
    assert CodeScaler.from_dict(scaler.to_dict()).std.tolist() == scaler.std.tolist()


def test_a_code_without_active_units_is_refused():
    with pytest.raises(ConfigError, match="no active unit"):
        CodeScaler.fit(torch.full((5, 3), 0.2))


class _LinearGuide(torch.nn.Module):
    """q(z | x) with loc = W x (flattened), scale 1."""

    def __init__(self, weight):
        super().__init__()
        self.weight = weight

    def encoder(self, x):
        loc = x.flatten(1) @ self.weight.T
        return loc, torch.ones_like(loc)


def test_code_dataset_holds_the_standardized_posterior_means_of_every_split():
    torch.manual_seed(0)
    weight = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, -1.0]])
    split = lambda n: Split(torch.rand(n, 1, 2, 2), torch.arange(n) % 2)  # noqa: E731
    images = ImageDataset("toy", split(12), split(5), split(6), binarize="dynamic")
    codes, scaler = code_dataset(_LinearGuide(weight), images)
    # dynamic binarization: the training images are encoded as one fixed 0/1 draw, as the
    # validation and test images are scored, not as their grey levels (M1 never saw those)
    drawn = images.scored_split("train").images
    assert set(drawn.unique().tolist()) == {0.0, 1.0}
    train_means = drawn.flatten(1) @ weight.T
    assert scaler.active.tolist() == [True, False, True]  # unit 1 is always 0
    expected = (train_means[:, [0, 2]] - train_means[:, [0, 2]].mean(0)) / train_means[:, [0, 2]].std(0)
    assert codes.train.images.shape == (12, 1, 1, 2) and codes.binarize == "none"
    assert torch.allclose(codes.train.images[:, 0, 0], expected, atol=1e-6)
    test_means = images.test.images.flatten(1) @ weight.T
    assert torch.allclose(codes.test.images[:, 0, 0], scaler(test_means), atol=1e-6)
    assert torch.equal(codes.valid.labels, images.valid.labels)
    assert torch.allclose(posterior_means(_LinearGuide(weight), images.test.images, batch_size=4), test_means)


def test_m1m2_program_log_density_equals_the_hand_computation():
    pyro.set_rng_seed(0)
    model, guide = build_vae(ModelConfig(model="m1m2", latent_dim=2, hidden_dims=[8]), (1, 1, 3), num_classes=4)
    c = torch.randn(5, 1, 1, 3)
    y = torch.tensor([0, 3, 1, 2, 3])
    z = torch.randn(5, 2)
    trace = poutine.trace(poutine.condition(model, {"z": z})).get_trace(c, y)
    loc = model.decoder_output(z, y)
    sigma = torch.nn.functional.softplus(model.likelihood.raw_scale) + 1e-3  # starts at 1
    assert torch.allclose(sigma, torch.ones(1, 1, 3), atol=1e-5)
    by_hand = (5 * math.log(1 / 4) + dist.Normal(0.0, 1.0).log_prob(z).sum()
               + dist.Normal(loc, sigma).log_prob(c).sum())
    assert torch.allclose(trace.log_prob_sum(), by_hand, atol=1e-4)
    assert guide.classify(c).shape == (5, 4)


def _two_separable_classes() -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of 20 one-pixel images each, -1 and +1."""
    x = torch.cat([torch.full((20, 1, 1, 1), -1.0), torch.full((20, 1, 1, 1), 1.0)])
    return x, torch.cat([torch.zeros(20, dtype=torch.long), torch.ones(20, dtype=torch.long)])


def _wrong_linear_classifier() -> torch.nn.Module:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0], [-1.0]])), net[1].bias.zero_()  # every answer wrong
    return net


def test_tuned_baseline_keeps_the_learning_rate_with_the_best_validation_accuracy():
    # two separable classes in one feature: a linear classifier from a bad start needs a large
    # enough step to get there within 3 steps; the tuner must keep the rate that did.
    torch.manual_seed(0)
    x, y = _two_separable_classes()
    data = ImageDataset("toy", Split(x, y), Split(x, y), Split(x, y))

    best = tuned_supervised_baseline(_wrong_linear_classifier, data, torch.arange(40), epochs=1, steps_per_epoch=3, batch_size=40,
                                     learning_rates=(1e-4, 1.0))
    assert best["learning_rate"] == 1.0 and best["valid_accuracy"] == 1.0


def test_tuned_baseline_scores_the_test_split_once(monkeypatch):
    """The tuner scored the test split once per learning rate tried (three times) and kept the
    number of the rate chosen by validation; the test split is read once, by the kept classifier."""
    from pyro_vae.inference import semisupervised

    torch.manual_seed(0)
    x, y = _two_separable_classes()
    test = Split(x.clone(), y.clone())
    data = ImageDataset("toy", Split(x, y), Split(x, y), test)
    scored = []
    accuracy = semisupervised.classification_accuracy
    monkeypatch.setattr(semisupervised, "classification_accuracy",
                        lambda guide, images, labels: scored.append(images) or accuracy(guide, images, labels))

    best = tuned_supervised_baseline(_wrong_linear_classifier, data, torch.arange(40), epochs=2, steps_per_epoch=3, batch_size=40,
                                     learning_rates=(1e-4, 1.0, 1e-5))
    assert sum(images is test.images for images in scored) == 1
    assert len(scored) == 3 * 2 + 1  # each rate's two epochs on the validation split, then the test split once
    assert best["learning_rate"] == 1.0 and best["test_accuracy"] == 1.0


def test_the_baseline_follows_m2s_learning_rate_decay_and_clipping(monkeypatch):
    """--lr-decay and --clip-norm shaped M2's training but not its baseline's, which kept a
    constant learning rate and unclipped gradients: it gets M2's schedule too."""
    from pyro_vae.inference import semisupervised

    x, y = _two_separable_classes()
    data = ImageDataset("toy", Split(x, y), Split(x, y), Split(x, y))
    optimizers, rates, clipped = [], [], []
    make_adam = semisupervised.make_adam
    monkeypatch.setattr(semisupervised, "make_adam", lambda params, lr: optimizers.append(make_adam(params, lr))
                        or optimizers[-1])
    accuracy = semisupervised.classification_accuracy  # called once after each epoch's steps
    monkeypatch.setattr(semisupervised, "classification_accuracy", lambda *args: rates.append(
        optimizers[-1].param_groups[0]["lr"]) or accuracy(*args))
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, norm: clipped.append(norm) or clip(params, norm))
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 2))
    semisupervised.fit_supervised_baseline(classifier, data, torch.arange(40), epochs=3, steps_per_epoch=2,
                                           batch_size=40, learning_rate=0.1, lr_decay=0.5, clip_norm=2.0)
    assert rates == pytest.approx([0.1, 0.05, 0.025])  # 0.1 x 0.5^(epoch - 1), as Trainer.begin_epoch sets M2's
    assert clipped == [2.0] * 6  # every step


@pytest.mark.parametrize("flags, message", [
    (dict(model="m1m2"), "--m1-run RUN"),
    (dict(model="vae", m1_run="runs/m1"), "--m1-run runs/m1 has no effect"),
    (dict(model="m1m2", m1_run="runs/m1", likelihood="gaussian"), "--likelihood gaussian has no effect"),
    # it was refused after M1's codes were made, for its 1 x D "image" not divisible by 4 ("use fewer conv_channels")
    # it said "choose --likelihood gaussian", which m1m2 refuses in turn
    (dict(model="m1m2", m1_run="runs/m1", likelihood_scale=0.5), r"--likelihood-scale 0.5 has no effect with --model "
                                                                 r"m1m2 \(its codes' Gaussian likelihood learns"),
    (dict(model="m1m2", m1_run="runs/m1", network="conv"), "--network conv has no place in --model m1m2, whose M2 "
                                                           "reads M1's codes, a vector, not an image"),
])
def test_m1m2_options_are_checked(flags, message):
    config = Config()
    labels = 100 if flags["model"] == "m1m2" else 0
    config.data.labels = labels
    for key, value in flags.items():
        setattr(config.model, key, value)
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_an_m1_run_that_is_not_a_run_directory_is_refused(tmp_path):
    from pyro_vae.runs import m1_codes

    config = Config()
    config.model.model, config.model.m1_run, config.data.labels = "m1m2", str(tmp_path / "none"), 100
    with pytest.raises(ConfigError, match="is not a run directory"):
        m1_codes(config, None, "cpu")


def test_an_m1_run_with_a_flow_guide_is_refused(idx_dir, tmp_path):
    """M2's codes are E[z | x] read from the encoder's Normal; a flow guide's q(z | x) is that
    Normal pushed through its steps, whose mean is not the encoder's (M2 learned on codes that
    M1's decoder never reads as its own)."""
    from test_train import small_config

    from pyro_vae.runs import m1_codes, train_run

    m1 = tmp_path / "m1"
    train_run(small_config(idx_dir, **{"model.flow": "householder", "model.flow_steps": 1, "train.epochs": 1}), m1,
              progress=False, log=lambda line: None)
    config = Config()
    config.model.model, config.model.m1_run, config.data.labels = "m1m2", str(m1), 100
    with pytest.raises(ConfigError, match="has a --flow householder guide"):
        m1_codes(config, None, "cpu")


def test_the_stacked_label_model_goes_through_m1s_code_and_back():
    """encode_style(x, y) = mean of q(z2 | scaler(E[z1 | x]), y); decode(z2, y) = M1's mean
    image at the code scaler^-1(M2's mean code)."""
    from pyro_vae.inference.codes import stacked_label_model

    torch.manual_seed(0)
    m1_model, m1_guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[8]), (1, 4, 4))
    # units 0 and 2 active (unit 1 goes back at its mean), each with its own mean and spread
    scaler = CodeScaler(torch.tensor([True, False, True]), torch.tensor([0.1, -0.2]), torch.tensor([0.5, 2.0]))
    dims = 2
    with torch.no_grad():
        model, guide = build_vae(ModelConfig(model="m1m2", latent_dim=2, hidden_dims=[8]), (1, 1, dims),
                                 num_classes=3)
        stacked = stacked_label_model(m1_model, m1_guide, scaler, model, guide)
        x, y, z = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 1]), torch.randn(4, 2)
        codes = scaler(posterior_means(m1_guide, x))[:, None, None, :]
        assert torch.equal(stacked.encode_style(x, y), guide.encode(codes, y)[0])
        want = m1_model.decode_mean(scaler.invert(model.decode_mean(z, y).flatten(-3)))
        assert want.shape == (4, 1, 4, 4) and torch.equal(stacked.decode(z, y), want)
        assert stacked.sample_prior == model.sample_prior and stacked.num_classes == 3


def test_an_m1m2_run_is_not_drawn_or_scored_as_images(idx_dir, tmp_path, capsys, monkeypatch):
    """M2's "images" in an M1+M2 run are M1's codes: no samples or reconstructions of them are
    drawn during training (--figure-every) or after it, and `reconstruct` and `plot --kind
    latent` refuse in one sentence; the curves are drawn, and `sample` and `plot --kind style`
    draw images decoded through M1 (M1's decoder mean at M2's mean code)."""
    from pyro_vae import plots
    from pyro_vae.cli import main

    common = ["--dataset", "idx", "--data-dir", str(idx_dir), "--hidden-dims", "16", "--no-progress"]
    m1, stacked = tmp_path / "m1", tmp_path / "m1m2"
    assert main(["train", "--model", "vae", "--latent-dim", "4", "--epochs", "4", "--batch-size", "32",
                 "--figures", "false", "--run-dir", str(m1), *common]) == 0
    assert main(["train", "--model", "m1m2", "--m1-run", str(m1), "--labels", "8", "--latent-dim", "2",
                 "--epochs", "2", "--figure-every", "1", "--run-dir", str(stacked), *common]) == 0
    assert not (stacked / "samples.png").exists() and not (stacked / "reconstructions.png").exists()
    summary = json.loads((stacked / "summary.json").read_text())
    # both baselines printed, each with its binomial standard error (the console gave only the pixels')
    def percent(key):
        return f"{100 * summary[key]:.2f} ± {100 * summary[key + '_stderr']:.2f}%"

    assert (f"supervised-only baseline {percent('baseline_test_accuracy')}; M1 + classifier (M2's classifier on "
            f"M1's codes) {percent('codes_baseline_test_accuracy')} (± is the binomial") in capsys.readouterr().out
    assert summary["figures"] == [str(stacked / "curves.png")] and (stacked / "curves.png").is_file()
    capsys.readouterr()
    for argv in (["reconstruct", str(stacked), "-o", str(tmp_path / "r.png")],
                 ["plot", str(stacked), "--kind", "latent", "-o", str(tmp_path / "p.png")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "M1's codes, not images" in err
        # commands that each of reconstruct and plot can follow
        assert f"`pyro-vae plot {stacked} --kind samples` (or --kind style) draws images decoded through M1" in err
    assert not any((tmp_path / name).exists() for name in ("r.png", "p.png"))
    assert main(["plot", str(stacked), "--kind", "curves", "-o", str(tmp_path / "c.png")]) == 0

    # samples and the style grid: every image drawn is M1's decoder mean at M2's decoded code
    from pyro_vae.runs import label_generator, open_run

    run = open_run(stacked)
    generator = label_generator(run)
    drawn = []
    rows_figure = plots._rows_figure
    monkeypatch.setattr(plots, "_rows_figure", lambda rows, *a, **k: drawn.append(rows) or rows_figure(rows, *a, **k))
    assert main(["sample", str(stacked), "-n", "8", "-o", str(tmp_path / "s.png")]) == 0
    assert main(["plot", str(stacked), "--kind", "style", "-n", "3", "-o", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "s.png").is_file() and (tmp_path / "g.png").is_file()
    samples, style = drawn
    m1_images = (1, 28, 28)
    assert [name for name, _ in samples] == [str(c) for c in range(run.model.num_classes)]
    assert all(images.shape == (2, *m1_images) for _, images in samples)  # 8 = 2 per class of 4, M1's image shape
    test = run.dataset().test.head(3)
    codes = generator.encode_style(test.images, test.labels)
    for c, (_, images) in enumerate(style[1:]):  # the rows below the inputs: each image's code, every class
        y = torch.full((3,), c)
        want = generator.decode(codes, y)
        assert images.shape == (3, *m1_images) and torch.allclose(images, want)
        assert not torch.allclose(want, generator.decode(codes, (y + 1) % run.model.num_classes))  # y matters
    for extra in ([], ["--k", "3"]):  # the ELBO crashed (a traceback); --k blamed the images' shape
        assert main(["evaluate", str(stacked), *extra]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "has no ELBO or log p(x) of the images" in err
    assert not (stacked / "evaluation.json").exists() and not (stacked / "loglik.json").exists()

    # M1 replaced since (retrained, resumed): resuming the M1+M2 run, or decoding through M1 for
    # its label fidelity, would use another model's codes; both are refused, nothing written
    import shutil

    from pyro_vae.errors import DataError
    from pyro_vae.runs import label_generator
    from pyro_vae.runs import open_run

    codes = json.loads((stacked / "m1_codes.json").read_text())
    assert len(codes["m1_checkpoint_sha256"]) == 64
    assert main(["train", "--model", "vae", "--latent-dim", "4", "--epochs", "1", "--seed", "1", "--figures", "false",
                 "--run-dir", str(tmp_path / "other"), *common]) == 0
    shutil.copyfile(tmp_path / "other" / "checkpoint_best.pt", m1 / "checkpoint_best.pt")
    before = {p.name: p.read_bytes() for p in stacked.iterdir()}
    capsys.readouterr()
    assert main(["train", "--resume", str(stacked), "--epochs", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"the M1 run {m1} has changed since the M1+M2 run {stacked} was trained on its codes" in err
    assert before == {p.name: p.read_bytes() for p in stacked.iterdir()}
    with pytest.raises(DataError, match="has changed since"):
        label_generator(open_run(stacked))


# -- --m1-codes sample: M2 trains on z_1 ~ q(z_1 | x), redrawn every batch (Kingma et al.'s code) --

def test_draw_codes_is_normal_around_each_code_with_its_own_scale():
    codes = torch.tensor([[0.0, 2.0], [-1.0, 5.0]]).repeat(20000, 1)  # [40000, 2]
    scales = torch.tensor([[1.0, 0.1], [0.5, 3.0]]).repeat(20000, 1)
    drawn = _draw(codes, scales, 0)
    for row in (0, 1):
        sample, mean, scale = drawn[row::2], codes[row], scales[row]
        # the mean within 5 standard errors of the draw's; the standard deviation within 2%
        assert ((sample.mean(0) - mean).abs() < 5 * scale / len(sample) ** 0.5).all()
        assert torch.allclose(sample.std(0), scale, rtol=0.02)
    assert torch.equal(_draw(codes, torch.zeros_like(scales), 1), codes)  # scale 0: the code itself


def _draw(codes, scales, seed):
    from pyro_vae.inference.codes import draw_codes

    return draw_codes(codes, scales, torch.Generator().manual_seed(seed))


class _LinearGuideWithScales(_LinearGuide):
    """q(z | x): loc = W x, scale = 0.1 + |V x| (varies with the image)."""

    def __init__(self, weight, scale_weight):
        super().__init__(weight)
        self.scale_weight = scale_weight

    def encoder(self, x):
        loc, _ = super().encoder(x)
        return loc, 0.1 + (x.flatten(1) @ self.scale_weight.T).abs()


def test_training_code_scales_are_the_encoders_scales_of_the_scored_training_images_standardized():
    from pyro_vae.inference.codes import training_code_scales

    torch.manual_seed(0)
    weight = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, -1.0]])
    scale_weight = torch.tensor([[0.5, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, -2.0, 0.0, 0.3]])
    split = lambda n: Split(torch.rand(n, 1, 2, 2), torch.arange(n) % 2)  # noqa: E731
    images = ImageDataset("toy", split(12), split(5), split(6), binarize="dynamic")
    guide = _LinearGuideWithScales(weight, scale_weight)
    codes, scaler = code_dataset(guide, images)
    scales = training_code_scales(guide, images, scaler)
    drawn = images.scored_split("train").images  # the fixed 0/1 draw the means were taken of
    by_hand = (0.1 + (drawn.flatten(1) @ scale_weight.T).abs())[:, [0, 2]] / scaler.std  # unit 1 inactive
    assert scales.shape == codes.train.images.shape == (12, 1, 1, 2)
    assert torch.allclose(scales[:, 0, 0], by_hand, atol=1e-6)


def _constant_codes(n=64, value=1.0):
    images = torch.full((n, 1, 1, 3), value)
    labels = torch.arange(n) % 2
    return ImageDataset("codes", Split(images, labels), Split(images[:8], labels[:8]), Split(images[:8], labels[:8]))


def test_the_m2_trainer_draws_every_training_code_around_its_mean_with_code_scales():
    """With ``code_scales`` the unlabelled and the labelled batch are both draws N(code, scale^2)
    (the codes are all 1.0 here, the scales 0.5); without, the codes themselves."""
    from pyro_vae.inference.semisupervised import SemiSupervisedTrainer
    from pyro_vae.inference.train import TrainSettings

    data = _constant_codes()
    seen = {}
    for scales in (None, torch.full((64, 1, 1, 3), 0.5)):
        torch.manual_seed(0)
        model, guide = build_vae(ModelConfig(model="m1m2", latent_dim=2, hidden_dims=[8]), (1, 1, 3), num_classes=2)
        trainer = SemiSupervisedTrainer(model, guide, data, torch.arange(8), TrainSettings(epochs=1, batch_size=16),
                                        code_scales=scales)
        unlabelled, labelled = [], []
        objective = trainer.objective
        real_unlabelled, real_labelled = objective.unlabelled, objective.labelled
        objective.unlabelled = lambda m, g, x: unlabelled.append(x) or real_unlabelled(m, g, x)
        objective.labelled = lambda m, g, x, y: labelled.append(x) or real_labelled(m, g, x, y)
        trainer.train_epoch()
        seen[scales is None] = torch.cat(unlabelled), torch.cat(labelled)
    assert all(torch.equal(x, torch.ones_like(x)) for x in seen[True])
    for x in seen[False]:
        assert x.shape[0] in (64, 32) and abs(x.mean().item() - 1.0) < 5 * 0.5 / x.numel() ** 0.5
        assert abs(x.std().item() - 0.5) < 0.1


def test_the_codes_baseline_trains_on_drawn_codes_with_code_scales(monkeypatch):
    from pyro_vae.inference import semisupervised

    data = _constant_codes()
    seen = []
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
    forward = classifier.forward
    monkeypatch.setattr(classifier, "forward", lambda x: (seen.append(x) if x.shape[0] == 8 and
                                                          classifier.training else None) or forward(x))
    semisupervised.fit_supervised_baseline(classifier, data, torch.arange(8), epochs=1, steps_per_epoch=50,
                                           batch_size=8, code_scales=torch.full((64, 1, 1, 3), 0.5))
    x = torch.cat(seen)
    assert len(seen) == 50 and abs(x.std().item() - 0.5) < 0.05 and abs(x.mean().item() - 1.0) < 0.05


def test_m1_codes_sample_is_refused_outside_m1m2_and_checked():
    config = Config()
    config.model.m1_codes = "sample"
    with pytest.raises(ConfigError, match="--m1-codes sample has no effect with --model vae"):
        config.validate()
    config = Config()
    config.model.model, config.model.m1_run, config.data.labels, config.model.m1_codes = "m1m2", "m1", 100, "draws"
    with pytest.raises(ConfigError, match="m1_codes"):
        config.validate()


def test_an_m1m2_run_with_sampled_codes_resumes_exactly_and_records_them(idx_dir, tmp_path):
    """--m1-codes sample: the draws come from the trainer's checkpointed noise stream, so two
    epochs in one go equal one epoch resumed for a second; and the draws change training (the
    same run on the means ends elsewhere). The choice is recorded in config.toml."""
    from test_train import small_config

    from pyro_vae.inference.checkpoint import load_checkpoint
    from pyro_vae.runs import LAST, train_run

    quiet = dict(progress=False, log=lambda line: None)
    m1 = tmp_path / "m1"
    train_run(small_config(idx_dir, **{"train.epochs": 2}), m1, **quiet)

    def config(epochs, codes="sample"):
        return small_config(idx_dir, **{"model.model": "m1m2", "model.m1_run": str(m1), "model.m1_codes": codes,
                                        "model.latent_dim": 2, "data.labels": 8, "train.epochs": epochs})

    train_run(config(2), tmp_path / "full", **quiet)
    train_run(config(1), tmp_path / "split", **quiet)
    train_run(None, tmp_path / "split", resume=True, overrides=config(2), **quiet)
    train_run(config(2, "mean"), tmp_path / "means", **quiet)
    full, split, means = (load_checkpoint(tmp_path / name / LAST) for name in ("full", "split", "means"))
    assert all(torch.equal(tensor, split["guide"][name]) for name, tensor in full["guide"].items())
    assert not all(torch.equal(tensor, means["guide"][name]) for name, tensor in full["guide"].items())
    assert 'm1_codes = "sample"' in (tmp_path / "full" / "config.toml").read_text()


def test_an_m1m2_run_encodes_the_images_as_its_m1_run_saw_them(idx_dir, tmp_path):
    """M2's codes are M1's encodings of the images, so an M1+M2 run takes its M1 run's
    binarization: with --binarize auto a grey-level M1 (continuous Bernoulli, --binarize none)
    gets the grey images, not the 0/1 draws that auto would give the run's own unused
    (Bernoulli) likelihood; a different --binarize given by hand is refused in one sentence."""
    from test_train import small_config

    from pyro_vae.runs import m1_codes, open_dataset, open_run, train_run

    m1 = tmp_path / "m1"
    train_run(small_config(idx_dir, **{"data.binarize": "none", "model.likelihood": "continuous-bernoulli",
                                       "train.epochs": 1}), m1, progress=False, log=lambda line: None)
    stacked = {"model.model": "m1m2", "model.m1_run": str(m1), "data.labels": 8, "model.latent_dim": 2}
    config = small_config(idx_dir, **stacked, **{"data.binarize": "auto"})
    assert config.data.binarize == "none"
    images = open_dataset(config)
    codes, _, _ = m1_codes(config, images, "cpu")
    guide = open_run(m1).guide.eval()
    grey = images.train.images  # 8-bit grey levels, as M1 trained on them
    assert len(grey.distinct_values()) > 2
    _, scaler = code_dataset(guide, images)
    want = scaler(posterior_means(guide, grey))[:, None, None, :]
    assert torch.allclose(codes.train.images, want)
    with pytest.raises(ConfigError, match=r"was trained with binarize 'none', this run has 'dynamic': give the "
                                          r"same --binarize"):
        m1_codes(small_config(idx_dir, **stacked, **{"data.binarize": "dynamic"}), images, "cpu")


def test_an_m1m2_run_trained_with_a_relative_m1_run_is_drawn_from_any_folder(idx_dir, tmp_path, monkeypatch):
    """`--m1-run runs/m1` (README's form) was recorded as given, relative to the folder training
    started in: `sample` from anywhere else then could not find M1. A new run records the
    absolute path; an older run's relative path is looked for above the run directory (and
    the M1 found is checked by its checkpoint's SHA-256)."""
    from pyro_vae.cli import main
    from pyro_vae.runs import read_run_config

    common = ["--dataset", "idx", "--data-dir", str(idx_dir), "--hidden-dims", "16", "--no-progress",
              "--figures", "false"]
    project = tmp_path / "project"
    (project / "runs").mkdir(parents=True)
    monkeypatch.chdir(project)
    assert main(["train", "--model", "vae", "--latent-dim", "4", "--epochs", "4", "--batch-size", "32", "--run-dir",
                 "runs/m1", *common]) == 0
    assert main(["train", "--model", "m1m2", "--m1-run", "runs/m1", "--labels", "8", "--latent-dim", "2",
                 "--epochs", "1", "--run-dir", "runs/m1m2", *common]) == 0
    stacked = project / "runs" / "m1m2"
    assert read_run_config(stacked).model.m1_run == str(project / "runs" / "m1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["sample", str(stacked), "--label", "1", "-o", "s.png"]) == 0 and (elsewhere / "s.png").is_file()
    # as a run trained before recorded it: relative to the project folder
    codes = json.loads((stacked / "m1_codes.json").read_text())
    (stacked / "m1_codes.json").write_text(json.dumps({**codes, "m1_run": "runs/m1"}))
    assert main(["sample", str(stacked), "--label", "1", "-o", "t.png"]) == 0 and (elsewhere / "t.png").is_file()
    (stacked / "m1_codes.json").write_text(json.dumps({**codes, "m1_run": "runs/nowhere"}))
    assert main(["sample", str(stacked), "--label", "1", "-o", "u.png"]) == 2 and not (elsewhere / "u.png").exists()


def test_an_m1_run_trained_on_another_folder_of_own_data_is_refused(idx_dir, tmp_path):
    """An idx (or image-folder) data set is the files in its --data-dir: M2's codes of other images,
    from an M1 that never saw them, were taken without a word."""
    from conftest import synthetic_images, write_idx
    from test_train import small_config

    from pyro_vae.runs import m1_codes, open_dataset, train_run

    other = tmp_path / "other"
    other.mkdir()
    for stem, n, seed in (("train", 1200, 7), ("t10k", 200, 8)):
        images, labels = synthetic_images(n, seed=seed)
        write_idx(other / f"{stem}-images-idx3-ubyte", images)
        write_idx(other / f"{stem}-labels-idx1-ubyte", labels)
    m1 = tmp_path / "m1"
    train_run(small_config(idx_dir, **{"train.epochs": 1}), m1, progress=False, log=lambda line: None)
    stacked = {"model.model": "m1m2", "model.m1_run": str(m1), "data.labels": 8, "model.latent_dim": 2}
    config = small_config(other, **stacked)
    with pytest.raises(ConfigError, match=r"was trained with data_dir '.*', this run has '.*other': give the same "
                                          r"--data-dir"):
        m1_codes(config, open_dataset(config), "cpu")
    same = small_config(idx_dir, **stacked)
    assert len(m1_codes(same, open_dataset(same), "cpu")[0].train) == 1000
