"""Label fidelity, the judging classifier and its cache, the linear probe of z, and
``evaluate --label-fidelity`` (issue #14's measurement)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from pyro_vae.cli import main
from pyro_vae.data.datasets import ImageDataset, Split
from pyro_vae.inference import judge as judge_module
from pyro_vae.inference.fidelity import (LabelModel, Proportion, fidelity_of, linear_probe, prior_fidelity,
                                         style_grid_fidelity)
from pyro_vae.inference.judge import JudgeCache, JudgeSettings, binomial_stderr, train_judge

K = 10
SIZE = 12
#: A judge small enough to train in about a second on the templates below.
TINY = JudgeSettings(channels=(4, 8), hidden=32, epochs=6, batch_size=32, learning_rate=1e-2, patience=2)


def _templates() -> torch.Tensor:
    """Ten distinct random 12x12 binary patterns ``[K, 1, 12, 12]``, one per class."""
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(K, 1, SIZE, SIZE, generator=generator) > 0.5).float()


def _template_data(templates: torch.Tensor, n: int, seed: int) -> Split:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(K).repeat(n // K)
    noise = 0.15 * torch.rand(len(labels), 1, SIZE, SIZE, generator=generator)
    return Split((templates[labels] * 0.85 + noise).clamp(0, 1), labels)


def _dataset(templates: torch.Tensor, name: str = "templates") -> ImageDataset:
    return ImageDataset(name, _template_data(templates, 600, 1), _template_data(templates, 100, 2),
                        _template_data(templates, 100, 3), class_names=tuple(str(c) for c in range(K)))


@pytest.fixture(scope="module")
def templates_and_judge():
    templates = _templates()
    judge = train_judge(_dataset(templates), TINY)
    assert judge.test_accuracy == 1.0  # it knows the templates
    return templates, judge


def test_the_judges_record_counts_what_it_was_trained_and_scored_on(templates_and_judge):
    _, judge = templates_and_judge
    record = judge.record
    assert (record["dataset"], record["num_classes"], record["image_shape"]) == ("templates", K, [1, SIZE, SIZE])
    assert (record["train_images"], record["test_images"]) == (600, 100)
    assert record["test_accuracy_stderr"] == binomial_stderr(1.0, 100) == 0.0
    assert record["test_accuracy_per_class"] == [1.0] * K
    assert 1 <= record["best_epoch"] <= record["epochs_run"] <= TINY.epochs
    # early stopping: training ends after `patience` epochs without a better validation
    # accuracy (the judge is perfect on validation by epoch 2 here, so it stops at epoch 4)
    assert record["epochs_run"] == min(TINY.epochs, record["best_epoch"] + TINY.patience) < TINY.epochs


def test_a_class_missing_from_the_test_split_has_no_per_class_accuracy():
    templates = _templates()
    test = _template_data(templates, 100, 3)
    present = test.labels != K - 1
    data = ImageDataset("templates", _template_data(templates, 100, 1), _template_data(templates, 100, 2),
                        Split(test.images[present], test.labels[present]), class_names=tuple(str(c) for c in range(K)))
    judge = train_judge(data, dataclasses.replace(TINY, epochs=1))
    record = judge.record
    per_class = record["test_accuracy_per_class"]
    assert record["epochs_run"] == 1 and len(per_class) == K and per_class[K - 1] is None
    # each class's accuracy is over that class's test images, by hand from the judge's answers
    hits = judge.predict(data.test.images) == data.test.labels
    assert per_class[:-1] == [hits[data.test.labels == c].float().mean().item() for c in range(K - 1)]


def test_the_data_checksum_reads_the_labels_as_well_as_the_images():
    from pyro_vae.inference.judge import dataset_checksum

    templates = _templates()
    data = _dataset(templates)
    relabelled = ImageDataset("templates", Split(data.train.images, (data.train.labels + 1) % K), data.valid, data.test,
                              class_names=data.class_names)
    assert dataset_checksum(relabelled) != dataset_checksum(data) == dataset_checksum(_dataset(templates))


def test_a_cached_judge_lives_in_a_folder_named_after_its_data_set_and_key(tmp_path):
    data = _dataset(_templates(), name="my data/set")
    path = JudgeCache(tmp_path).path(data, TINY)
    assert path.name == "judge.pt" and path.parent.parent == tmp_path
    assert path.parent.name == "my_data_set-" + JudgeCache.key(data, TINY)[:16]


def test_the_label_model_of_a_conditional_vae_reads_its_networks():
    from pyro_vae.build import build_vae
    from pyro_vae.config import ModelConfig
    from pyro_vae.inference.fidelity import label_model

    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(model="cvae", latent_dim=2, hidden_dims=[8]), (1, 4, 4), num_classes=3)
    labelled = label_model(model, guide)
    x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    assert torch.equal(labelled.encode_style(x, y), guide.encode(x, y)[0])
    assert not torch.equal(labelled.encode_style(x, y), guide.encode(x, (y + 1) % 3)[0])  # y is read
    z = torch.randn(5, 2)
    assert torch.equal(labelled.decode(z, y), model.decode_mean(z, y))
    assert labelled.sample_prior == model.sample_prior and labelled.num_classes == 3


def _generator(decode, encode_style=None) -> LabelModel:
    return LabelModel(decode=decode, encode_style=encode_style or (lambda x, y: torch.zeros(len(y), 2)),
                      sample_prior=lambda y: torch.randn(len(y), 2), num_classes=K)


def test_a_decoder_that_draws_its_label_has_fidelity_one(templates_and_judge):
    templates, judge = templates_and_judge
    generator = _generator(lambda z, y: templates[y])
    prior = prior_fidelity(generator, judge.predict, per_class=7)
    assert prior.overall.value == 1.0 and prior.overall.stderr == 0.0 and prior.overall.n == 70
    assert [p.value for p in prior.per_class] == [1.0] * K and [p.n for p in prior.per_class] == [7] * K
    test = _template_data(templates, 30, 4)
    grid, swapped = style_grid_fidelity(generator, judge.predict, test.images, test.labels)
    assert (grid.overall.value, grid.overall.n, swapped.value, swapped.n) == (1.0, 300, 1.0, 270)


def test_a_decoder_that_ignores_the_label_scores_one_class_in_ten(templates_and_judge):
    templates, judge = templates_and_judge
    generator = _generator(lambda z, y: templates[torch.full_like(y, 3)])  # always draws class 3
    prior = prior_fidelity(generator, judge.predict, per_class=5)
    assert [p.value for p in prior.per_class] == [0.0, 0.0, 0.0, 1.0] + [0.0] * 6
    assert prior.overall.value == pytest.approx(0.1) and prior.overall.stderr == pytest.approx(math.sqrt(0.09 / 50))
    test = _template_data(templates, 20, 4)  # two images of each class
    grid, swapped = style_grid_fidelity(generator, judge.predict, test.images, test.labels)
    assert grid.overall.value == pytest.approx(0.1)
    # swapped cells: label 3 on the 18 images of other classes are hits, of 20 x 9 cells
    assert swapped.n == 180 and swapped.value == pytest.approx(18 / 180)


def test_a_decoder_that_reads_the_class_from_z_fails_the_style_grid(templates_and_judge):
    """z carries the image's class (one-hot) and the decoder draws that class whatever y:
    the grid keeps each input's class, so only the diagonal cells are right."""
    templates, judge = templates_and_judge
    generator = _generator(lambda z, y: templates[z.argmax(-1)],
                           encode_style=lambda x, y: torch.nn.functional.one_hot(y, K).float())
    test = _template_data(templates, 20, 4)
    grid, swapped = style_grid_fidelity(generator, judge.predict, test.images, test.labels)
    assert grid.overall.value == pytest.approx(0.1) and swapped.value == 0.0


def test_binomial_standard_error():
    assert binomial_stderr(0.9, 100) == pytest.approx(0.03)
    assert binomial_stderr(0.5, 400) == pytest.approx(0.025)
    assert binomial_stderr(1.0, 50) == 0.0
    share = Proportion.of(torch.tensor([True, True, True, False]))
    assert (share.value, share.n) == (0.75, 4) and share.stderr == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    result = fidelity_of(torch.tensor([0, 1, 1, 2, 2, 2]), torch.tensor([0, 0, 1, 1, 2, 2]), 4)
    assert [p.value for p in result.per_class[:3]] == [0.5, 0.5, 1.0] and result.overall.value == pytest.approx(4 / 6)
    assert result.per_class[3].to_dict() == {"value": None, "stderr": None, "n": 0}  # no image of class 3
    # the JSON forms of the results
    assert result.to_dict() == {"fidelity": pytest.approx(4 / 6), "stderr": result.overall.stderr, "images": 6,
                                "per_class": [p.to_dict() for p in result.per_class]}
    from pyro_vae.inference.fidelity import ProbeResult
    assert ProbeResult(0.9, 0.03, 0.1, 100, 50).to_dict() == {
        "accuracy": 0.9, "stderr": 0.03, "chance": 0.1, "train_examples": 100, "test_examples": 50}


def _probe_data(n: int, seed: int, encodes_label: bool):
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (n,), generator=generator)
    mixing = torch.randn(K, 6, generator=torch.Generator().manual_seed(99))  # the same linear code in both splits
    noise = torch.randn(n, 6, generator=generator)
    return (torch.nn.functional.one_hot(y, K).float() @ mixing + 0.1 * noise if encodes_label else noise), y


def test_the_linear_probe_finds_a_linear_code_of_the_label():
    z_train, y_train = _probe_data(2000, 1, True)
    z_test, y_test = _probe_data(1000, 2, True)
    probe = linear_probe(z_train, y_train, z_test, y_test, K)
    assert probe.accuracy > 0.98 and (probe.train_examples, probe.test_examples) == (2000, 1000)
    assert probe.chance == pytest.approx(0.1, abs=0.03)
    # the codes are standardised with the training mean and scale, for both splits alike
    shifted = linear_probe(z_train * 3 + 10, y_train, z_test * 3 + 10, y_test, K)
    assert shifted.accuracy == pytest.approx(probe.accuracy, abs=0.002)


def test_the_linear_probe_is_at_chance_on_codes_independent_of_the_label():
    z_train, y_train = _probe_data(2000, 1, False)
    z_test, y_test = _probe_data(2000, 2, False)
    probe = linear_probe(z_train, y_train, z_test, y_test, K)
    assert abs(probe.accuracy - probe.chance) < 4 * math.sqrt(0.1 * 0.9 / 2000) + 0.01
    assert probe.stderr == pytest.approx(binomial_stderr(probe.accuracy, 2000))


def test_the_probes_ridge_penalty_shrinks_a_weak_code_to_the_majority_class():
    # a 1-D code weakly informative of a 30/70 label: with a small l2 the probe follows it,
    # with l2 = 100 the penalty l2 |W|^2 pins W near 0, so the bias alone predicts: the
    # majority class everywhere, exactly chance (a penalty that is not a square, unbounded
    # below, sends W anywhere instead)
    generator = torch.Generator().manual_seed(0)
    y = (torch.rand(4000, generator=generator) < 0.7).long()
    z = (1.5 * y + torch.randn(4000, generator=generator)).unsqueeze(1)
    weak = linear_probe(z[:2000], y[:2000], z[2000:], y[2000:], 2)
    assert weak.accuracy > weak.chance + 0.03
    ridge = linear_probe(z[:2000], y[:2000], z[2000:], y[2000:], 2, l2=100.0)
    assert ridge.accuracy == ridge.chance == (y[2000:] == 1).double().mean().item()
    # so also for codes on another scale: both splits are standardised alike first
    wide = linear_probe(30 * z[:2000], y[:2000], 30 * z[2000:], y[2000:], 2, l2=100.0)
    assert wide.accuracy == ridge.accuracy


def test_the_judge_is_cached_and_a_changed_data_set_retrains(tmp_path, monkeypatch):
    templates = _templates()
    cache = JudgeCache(tmp_path / "judges")
    first = cache.load_or_train(_dataset(templates), TINY)
    assert not first.from_cache
    trained = []
    real_train = judge_module.train_judge
    monkeypatch.setattr(judge_module, "train_judge", lambda *a, **k: trained.append(1) or real_train(*a, **k))
    again = cache.load_or_train(_dataset(templates), TINY)
    assert again.from_cache and not trained and again.record == first.record
    probe = _template_data(templates, 50, 7).images
    assert torch.equal(again.predict(probe), first.predict(probe))
    changed = _dataset(templates)
    changed.train.images[0, 0, 0, 0] += 0.5  # one pixel of one training image
    retrained = cache.load_or_train(changed, TINY)
    assert not retrained.from_cache and trained == [1]
    assert retrained.record["data_sha256"] != first.record["data_sha256"]
    assert len(list((tmp_path / "judges").iterdir())) == 2
    other_settings = cache.load_or_train(_dataset(templates), JudgeSettings(**{**TINY.__dict__, "hidden": 8}))
    assert not other_settings.from_cache and trained == [1, 1]
    # a judge file deleted by hand, its folder left: the judge is retrained and saved again
    path = cache.path(_dataset(templates), TINY)
    path.unlink()
    assert path.parent.is_dir()
    rebuilt = cache.load_or_train(_dataset(templates), TINY)
    assert not rebuilt.from_cache and trained == [1, 1, 1] and path.is_file()


def test_a_cache_folder_that_cannot_be_made_is_refused_before_the_judge_trains(tmp_path, monkeypatch):
    """PYRO_VAE_CLASSIFIER_CACHE=/some/file trained the judge (minutes on real data) and only then
    refused the folder; now nothing is trained first."""
    from pyro_vae.errors import WriteError

    (tmp_path / "a-file").write_text("not a folder")
    trained = []
    monkeypatch.setattr(judge_module, "train_judge", lambda *a, **k: trained.append(1))
    with pytest.raises(WriteError, match="cannot create the classifier cache"):
        JudgeCache(tmp_path / "a-file").load_or_train(_dataset(_templates()), TINY)
    assert trained == []


def test_the_cache_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_VAE_CLASSIFIER_CACHE", str(tmp_path / "mine"))
    assert JudgeCache().root == tmp_path / "mine"


def _train(run, idx_dir, model: str):
    assert main(["train", "--model", model, "--dataset", "idx", "--data-dir", str(idx_dir), "--run-dir", str(run),
                 "--epochs", "1", "--hidden-dims", "32", "--latent-dim", "2", "--no-progress"]) == 0


def test_evaluate_refuses_label_fidelity_for_an_unlabelled_model(idx_dir, tmp_path, capsys):
    run = tmp_path / "vae"
    _train(run, idx_dir, "vae")
    before = sorted(p.name for p in run.iterdir())
    capsys.readouterr()
    code = main(["evaluate", str(run), "--label-fidelity", "--classifier-cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and "--label-fidelity measures how a label controls a labelled model" in err
    assert err.count(".") <= 3 and len(err.strip().splitlines()) == 1  # one sentence
    assert sorted(p.name for p in run.iterdir()) == before and not (tmp_path / "cache").exists()


def test_evaluate_label_fidelity_of_a_cvae_run(idx_dir, tmp_path, capsys):
    from pyro_vae.experiments.compare import compare_table, read_run

    run, cache = tmp_path / "cvae", tmp_path / "cache"
    _train(run, idx_dir, "cvae")
    capsys.readouterr()
    args = ["evaluate", str(run), "--label-fidelity", "--classifier-cache", str(cache), "--fidelity-samples", "3",
            "--fidelity-images", "8"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "label fidelity of prior samples" in out and "linear probe of z" in out
    result = json.loads((run / "label_fidelity.json").read_text())
    assert result["prior"]["images"] == 3 * 4 and result["style_grid"]["images"] == 8 * 4  # the four classes
    assert result["style_grid"]["swapped"]["images"] == 8 * 3 and result["seed"] == 0
    assert not result["judge"]["from_cache"] and result["judge"]["test_accuracy"] > 0.9  # four easy classes
    assert 0 <= result["z_probe_accuracy"] <= 1 and result["z_probe"]["test_examples"] == 200
    assert main(args) == 0  # the second time the judge comes from the cache
    assert json.loads((run / "label_fidelity.json").read_text())["judge"]["from_cache"]
    columns, rows = compare_table([read_run(run)])
    assert rows[0]["label fidelity (prior)"] == pytest.approx(result["prior"]["fidelity"])
    assert "z probe accuracy" in columns


def test_evaluate_label_fidelity_reads_the_split_it_is_given(idx_dir, tmp_path, capsys):
    """--split valid lets a setting be chosen without reading the test set: the style grid
    encodes, and the probe is scored on, the split named (the idx data: 1,000 training images,
    200 validation, 200 test). --split train is refused: the probe is fitted to the training
    images, so its accuracy there was in-sample (it printed "train accuracy 78.50%")."""
    run, cache = tmp_path / "cvae", tmp_path / "cache"
    _train(run, idx_dir, "cvae")
    base = ["evaluate", str(run), "--label-fidelity", "--classifier-cache", str(cache), "--fidelity-samples", "2",
            "--fidelity-images", "300"]
    assert main(base + ["--split", "train", "-o", str(tmp_path / "train.json")]) == 2
    assert "in-sample accuracy" in capsys.readouterr().err and not (tmp_path / "train.json").exists()
    assert main(base + ["--split", "valid", "-o", str(tmp_path / "valid.json")]) == 0
    result = json.loads((tmp_path / "valid.json").read_text())
    assert result["style_grid"]["split"] == "valid" and result["z_probe"]["split"] == "valid"
    assert result["style_grid"]["images"] == 200 * 4 and result["z_probe"]["test_examples"] == 200
    assert "200 valid images x every label" in capsys.readouterr().out


EXECUTED = []


def _executed():
    EXECUTED.append(1)
    return {}


class _Payload:
    def __reduce__(self):
        return (_executed, ())


def test_an_unreadable_or_foreign_cached_judge_is_retrained_not_run(tmp_path):
    """judge.pt is read with weights_only=True: a truncated file, or a pickle that would run
    code, is not loaded (nor run) but trained again and replaced, with a line saying so."""
    templates = _templates()
    cache = JudgeCache(tmp_path / "judges")
    first = cache.load_or_train(_dataset(templates), TINY)
    assert cache.load_or_train(_dataset(templates), TINY).from_cache  # its own file reads as plain data
    path = cache.path(_dataset(templates), TINY)
    whole = path.read_bytes()
    lines = []
    for bad in (whole[: len(whole) // 2], None):
        if bad is None:
            torch.save({"state": {}, "record": _Payload()}, path)
        else:
            path.write_bytes(bad)
        lines.clear()
        judge = cache.load_or_train(_dataset(templates), TINY, log=lines.append)
        assert not judge.from_cache and judge.record["data_sha256"] == first.record["data_sha256"]
        assert "is unreadable" in lines[0] and cache.load_or_train(_dataset(templates), TINY).from_cache
    assert EXECUTED == []
