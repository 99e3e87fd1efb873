"""Options that a combination ignores are refused (config checks, before anything is written)."""

from __future__ import annotations

import re

import pytest

from pyro_vae.cli import main
from pyro_vae.config import Config, ineffective_options

TINY = ["--dataset", "idx", "--latent-dim", "3", "--hidden-dims", "32", "--epochs", "1", "--batch-size", "100",
        "--train-limit", "300", "--no-progress"]


def _one_sentence(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def _refused(settings: dict) -> list[str]:
    config = Config()
    for key, value in settings.items():
        config.set(key, value)
    return [sentence for _, sentence in ineffective_options(config.validate(check_effect=False))]


# -- 1. the label models select by validation accuracy ---------------------------------------

@pytest.mark.parametrize("section,name,models", [
    ("data", "labels", ("m2", "m1m2", "adgm")), ("train", "alpha", ("m2", "m1m2", "adgm")),
    ("train", "labelled_weight", ("m2", "m1m2", "adgm")),
    ("model", "label_at_encoder_input", ("cvae", "m2", "m1m2"))])
def test_the_help_of_a_label_option_names_every_model_that_reads_it(section, name, models):
    """--help said --alpha and --labelled-weight were for --model m2 (and --labels for m2 and
    m1m2), though the ADGM and M1+M2 train with them; each model that reads one is named."""
    from pyro_vae.config import SECTIONS, SEMI_SUPERVISED, field_help

    note = field_help(SECTIONS[section])[name]
    assert all(re.search(rf"\b{model}\b", note) for model in models), note
    if name in ("alpha", "labelled_weight"):  # and a model that ignores it is pointed to all of them
        (sentence,) = [s for s in _refused({"model.model": "cvae", f"train.{name}": "balanced" if
                                             name == "labelled_weight" else 2.0}) if s.startswith(f"--{name.replace('_', '-')}")]
        assert sentence.endswith(f"choose --model {', '.join(SEMI_SUPERVISED[:-1])} or {SEMI_SUPERVISED[-1]}.")

@pytest.mark.parametrize("model", ["m2", "adgm", "m1m2"])
@pytest.mark.parametrize("key,value,flag", [("train.select_by", "valid-iwae", "--select-by valid-iwae"),
                                            ("train.select_by", "valid-elbo", "--select-by valid-elbo"),
                                            ("train.select_k", 50, "--select-k 50"),
                                            ("train.select_examples", 200, "--select-examples 200")])
def test_the_label_models_refuse_a_selection_rule(model, key, value, flag):
    settings = {"model.model": model, "data.labels": 100, key: value}
    if model == "m1m2":
        settings["model.m1_run"] = "/some/run"
    sentences = _refused(settings)
    assert any(s.startswith(f"{flag} has no effect with --model {model}") and "validation accuracy" in s
               for s in sentences), sentences


def test_m2_with_a_selection_rule_exits_2_before_writing(idx_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *TINY, "--model", "m2",
                 "--labels", "40", "--select-by", "valid-iwae"]) == 2
    assert "--select-by valid-iwae has no effect with --model m2" in _one_sentence(capsys)
    assert not run.exists()


def test_m2_with_the_default_selection_is_accepted():
    assert _refused({"model.model": "m2", "data.labels": 100, "train.select_by": "auto"}) == []


# -- 2. the autoencoder's point-mass code and missing KL term ---------------------------------

@pytest.mark.parametrize("key,value,message", [
    ("model.scale_transform", "exp", "--scale-transform exp has no effect with --model ae"),
    ("model.min_scale", 0.01, "--min-scale 0.01 has no effect with --model ae"),
    ("train.objective", "analytic-kl", "--objective analytic-kl has no effect with --model ae"),
    ("train.elbo_implementation", "pyro", "--elbo-implementation pyro has no effect with --model ae"),
])
def test_the_autoencoder_refuses_what_it_ignores(key, value, message):
    assert any(s.startswith(message) for s in _refused({"model.model": "ae", key: value}))
    # the same values take effect for a VAE
    assert _refused({"model.model": "vae", key: value}) == []


@pytest.mark.parametrize("select_by,message", [
    ("valid-elbo", "--select-by valid-elbo has no effect with --model ae"),
    ("valid-iwae", "--select-by valid-iwae needs log p(z), and --model ae has no prior"),
    ("valid-loglik", "--select-by valid-loglik needs log p(z), and --model ae has no prior"),
])
def test_the_autoencoder_refuses_a_selection_rule_before_writing(idx_dir, tmp_path, capsys, select_by, message):
    """valid-iwae and valid-loglik used to fail after config.toml was written; valid-elbo is its default."""
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *TINY, "--model", "ae",
                 "--select-by", select_by]) == 2
    assert message in _one_sentence(capsys)
    assert not run.exists()


def test_ae_with_analytic_kl_exits_2_before_writing(idx_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *TINY, "--model", "ae",
                 "--objective", "analytic-kl"]) == 2
    assert "--objective analytic-kl has no effect with --model ae" in _one_sentence(capsys)
    assert not run.exists()


# -- 3. binarized-mnist is binary already -----------------------------------------------------

@pytest.mark.parametrize("how", ["dynamic", "static", "threshold"])
def test_binarized_mnist_refuses_a_binarization(how):
    assert any(s.startswith(f"--binarize {how} has no effect with --dataset binarized-mnist")
               for s in _refused({"data.dataset": "binarized-mnist", "data.binarize": how}))


def test_binarized_mnist_records_the_binarization_it_gets():
    """auto is none there (load_dataset ignores any other), so config.toml and summary say so."""
    config = Config()
    config.set("data.dataset", "binarized-mnist")
    assert config.validate().data.binarize == "none"
    fashion = Config()
    fashion.set("data.dataset", "fashion-mnist")
    assert fashion.validate().data.binarize == "dynamic"
    explicit = Config()
    explicit.set("data.dataset", "binarized-mnist"), explicit.set("data.binarize", "none")
    assert explicit.validate().data.binarize == "none"


#: What a committed config's own header says to add on the command line (it cannot be in the file).
CONFIG_COMMAND_LINE = {"celeba.toml": {"data.data_dir": "your-images"}, "fashion-mnist-m2.toml": {"data.labels": 100}}


def test_every_committed_config_loads_and_each_of_its_options_takes_effect():
    """A config in configs/ is a results row's recipe: an option in it that changes nothing
    (or one this version no longer knows) would be refused by the run it documents."""
    from pathlib import Path

    from pyro_vae.config import ineffective_options
    from pyro_vae.experiments import sweep

    paths = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))
    assert len(paths) >= 10
    for path in paths:
        raw, table = sweep.split_sweep_table(sweep.read_toml(path), str(path))
        config = Config.from_dict(raw, source=str(path))
        for key, value in CONFIG_COMMAND_LINE.get(path.name, {}).items():
            config.set(key, value)
        if table:  # a sweep's file: every point of its grid is a run
            spec = sweep.build_spec(config, table, [], [], None, None, None, None, source=str(path))
            assert all(spec.config_for(point) for point in spec.points()), path
            continue
        assert ineffective_options(config.validate(check_effect=False)) == [], path
        if path.name.startswith("binarized-mnist"):  # static binary data: nothing to binarize
            assert config.validate().data.binarize == "none", path



def test_every_committed_config_names_the_command_that_runs_it():
    """Each config's header comment holds the command line that runs that very file."""
    from pathlib import Path

    paths = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))
    missing = [path.name for path in paths
               if not any(line.startswith(f"# pyro-vae {command} --config configs/{path.name}")
                          for line in path.read_text().splitlines() for command in ("train", "sweep"))]
    assert missing == []

# -- 4. --k sets the K of the selecting IWAE bound ---------------------------------------------

def test_k_is_accepted_where_the_selection_uses_it_and_refused_elsewhere():
    assert _refused({"train.objective": "elbo", "train.select_by": "valid-iwae", "train.k": 10}) == []
    for select_by in ("auto", "valid-elbo", "valid-loglik"):
        assert any(s.startswith("--k 10 has no effect with --objective elbo") for s in
                   _refused({"train.objective": "elbo", "train.select_by": select_by, "train.k": 10})), select_by


def test_the_summary_records_the_k_of_the_selecting_bound(idx_dir, tmp_path):
    import json

    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *TINY, "--objective", "elbo",
                 "--select-by", "valid-iwae", "--k", "10"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["selection"] == "best validation IWAE bound (K=10)"
    assert summary["k"] is None  # the training objective's K: the ELBO has none


# -- 5. the device's name is checked where CUDA exists too -------------------------------------

@pytest.mark.parametrize("name", ["cuda:x", "cudaa", "cuda:", "cuda:0:1", "cpu:0", " cuda"])
def test_a_malformed_device_is_refused_in_one_sentence_even_where_cuda_exists(idx_dir, tmp_path, capsys,
                                                                              monkeypatch, name):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *TINY, "--device", name]) == 2
    assert f"--device {name} is not a device name" in _one_sentence(capsys)
    assert not run.exists()


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:0", "cuda:12"])
def test_well_formed_devices_pass_the_config_check(name):
    config = Config()
    config.set("train.device", name)
    config.validate()


def test_a_gpu_index_beyond_the_machine_is_refused(monkeypatch):
    import torch

    from pyro_vae.errors import ConfigError
    from pyro_vae.runs import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match="has 2 CUDA device"):
        resolve_device("cuda:2")
    with pytest.raises(ConfigError, match="is not a device name"):
        resolve_device("cuda:x")


# -- 6. figure options that the chosen kind does not read, and the caps of -n ------------------

@pytest.fixture(scope="module")
def tiny_run(idx_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("ignored") / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *TINY]) == 0
    return run


@pytest.mark.parametrize("argv,message", [
    (["plot", "--kind", "samples", "--attribute", "Smiling"], "--attribute has no effect with --kind samples"),
    (["plot", "--kind", "samples", "--index-a", "3"], "--index-a has no effect with --kind samples"),
    (["plot", "--kind", "samples", "--limit", "100"], "--limit has no effect with --kind samples"),
    (["plot", "--kind", "samples", "--metric", "test_kl"], "--metric has no effect with --kind samples"),
    (["plot", "--kind", "samples", "--image-a", "a.png"], "--image-a has no effect with --kind samples"),
    (["plot", "--kind", "samples", "--attribute-file", "/nonexistent.txt"],
     "--attribute-file has no effect with --kind samples"),
    (["plot", "--kind", "curves", "--seed", "3"], "--seed has no effect with --kind curves"),
    (["plot", "--kind", "curves", "-n", "10"], "-n has no effect with --kind curves"),
    (["plot", "--kind", "curves", "--limit", "100"], "--limit has no effect with --kind curves"),
    # --limit only bounded the image numbers these figures may use, so it changed no pixel
    (["plot", "--kind", "interpolate", "--limit", "10"], "--limit has no effect with --kind interpolate"),
    (["plot", "--kind", "reconstructions", "--limit", "50"], "--limit has no effect with --kind reconstructions"),
    (["plot", "--kind", "manifold", "--limit", "50"], "--limit has no effect on a VAE's manifold"),
    (["plot", "--kind", "curves", "--device", "cpu"], "--device has no effect with --kind curves"),
    (["plot", "--kind", "reconstructions", "-n", "33"], "-n 33 is more than the reconstructions figure draws"),
    (["plot", "--kind", "samples", "-n", "1025"], "-n 1025 is more than the samples figure draws"),
    (["reconstruct", "-n", "100"], "-n 100 is more than the reconstructions figure draws (at most 32)"),
    (["sample", "-n", "100000"], "-n 100000 is more than the samples figure draws (at most 1024)"),
    # every model with a label is named (the ADGM was left out)
    (["sample", "--label", "3"], "--label draws one class of a conditional model (--model cvae, m2, adgm or m1m2)"),
    (["plot", "--kind", "samples", "--label", "3"], "--label draws one class of a conditional model (--model cvae"),
])
def test_a_figure_option_with_no_effect_is_refused_before_drawing(tiny_run, tmp_path, capsys, argv, message):
    out = tmp_path / "figure.png"
    command, *rest = argv
    assert main([command, str(tiny_run), *rest, "-o", str(out)]) == 2
    assert message in _one_sentence(capsys)
    assert not out.exists()


def test_the_options_a_kind_reads_are_accepted(tiny_run, tmp_path):
    for argv in (["--kind", "samples", "-n", "9", "--seed", "3"], ["--kind", "curves"],
                 ["--kind", "reconstructions", "-n", "32"],
                 ["--kind", "interpolate", "--index-a", "2", "--index-b", "3"]):
        out = tmp_path / f"{argv[1]}.png"
        assert main(["plot", str(tiny_run), *argv, "-o", str(out)]) == 0, argv
        assert out.stat().st_size > 0


@pytest.mark.parametrize("name,flag", [("n", "-n"), ("limit", "--limit"), ("seed", "--seed")])
def test_plot_help_names_exactly_the_kinds_that_read_an_option(name, flag):
    """`plot --help` said --limit was read by interpolate, reconstructions and style, which
    refuse it: the help names the kinds of PLOT_OPTIONS, as the refusal does."""
    from pyro_vae.cli import PLOT_OPTIONS, build_parser

    plot = build_parser()._subparsers._group_actions[0].choices["plot"]
    (action,) = [a for a in plot._actions if flag in a.option_strings]
    named = [kind for kind in PLOT_OPTIONS if re.search(rf"(?<![\w-]){re.escape(kind)}(?![\w-])", action.help)]
    assert named == [kind for kind, names in PLOT_OPTIONS.items() if name in names]


def test_compare_refuses_a_metric_without_a_figure(tiny_run, capsys):
    assert main(["compare", str(tiny_run), str(tiny_run), "--metric", "nonsense"]) == 2
    assert "--metric nonsense has no effect without --figure" in _one_sentence(capsys)


@pytest.mark.parametrize("argv,message", [
    (["plot", "RUN", "--kind", "sweep", "--metric", "bogus", "-o", "OUT"], "unknown --metric 'bogus'; choose from"),
    (["plot", "RUN", "--kind", "interpolate", "--index-a", "3", "--image-a", "a.png", "--image-b", "b.png", "-o",
      "OUT"], "both choose the two images to interpolate between; give one pair"),  # the indices were ignored
    (["plot", "RUN", "--kind", "sweep", "--metric", "test_accuracy", "-o", "OUT"], "has no test_accuracy"),
    (["compare", "RUN", "--figure", "OUT", "--metric", "valid_accuracy"], "has no valid_accuracy"),
])
def test_a_figure_metric_or_image_pair_refused_in_one_sentence_before_any_output(tiny_run, tmp_path, capsys, argv,
                                                                                 message):
    """A sweep figure's metric that is unknown, or that a run lacks (a VAE has no accuracy),
    was a KeyError traceback (compare's after its table was printed); interpolate given two
    pairs of images ignored the indices."""
    out = tmp_path / "fig.png"
    assert main([str(tiny_run) if a == "RUN" else str(out) if a == "OUT" else a for a in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and not out.exists()
