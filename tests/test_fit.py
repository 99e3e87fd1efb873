"""pyro_vae.fit, the Python entry point: function-style Pyro programs as in Pyro's tutorials,
checked against closed forms on a linear-Gaussian model; resume equals an uninterrupted run;
a library model gets the CLI's files."""

from __future__ import annotations

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import pyro_vae
from pyro_vae import ModelConfig, build_vae, fit
from pyro_vae.config import Config
from pyro_vae.data.datasets import ImageDataset, Split
from pyro_vae.errors import CheckpointError, ConfigError, DataError

D, SIGMA = 4, 0.5
W_TRUE = torch.tensor([[1.5], [-1.0], [0.5], [2.0]])
B_TRUE = torch.tensor([0.3, -0.2, 1.0, 0.0])


def linear_gaussian_data(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, generator=g)
    return z @ W_TRUE.T + B_TRUE + SIGMA * torch.randn(n, D, generator=g)


def tutorial_programs():
    """p(z) = N(0, 1), p(x | z) = N(W z + b, SIGMA^2 I) with W, b learned (pyro.param);
    q(z | x) = N(a.x + c, s^2) from a linear encoder (pyro.module): the exact posterior
    family, so the best ELBO is the maximum log-likelihood."""
    encoder = nn.Linear(D, 2)

    def model(x):
        w = pyro.param("W", 0.1 * torch.ones(D, 1))
        b = pyro.param("b", torch.zeros(D))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 1), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ w.T + b, SIGMA).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        loc, raw = encoder(x).split(1, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))

    return model, guide


def exact_log_likelihood(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cov = w @ w.T + SIGMA ** 2 * torch.eye(D, dtype=w.dtype)
    return dist.MultivariateNormal(b, covariance_matrix=cov).log_prob(x)


def max_log_likelihood(x: torch.Tensor) -> float:
    """Tipping & Bishop's maximum of the mean log-likelihood over W (one column) and b,
    sigma fixed: b = mean, C = sigma^2 I + (lambda_1 - sigma^2) u_1 u_1^T."""
    x = x.double()
    s = torch.cov(x.T, correction=0)
    lam = torch.linalg.eigvalsh(s).flip(0)
    assert lam[0] > SIGMA ** 2
    log_det = math.log(lam[0]) + (D - 1) * math.log(SIGMA ** 2)
    trace = 1.0 + (lam[1:] / SIGMA ** 2).sum().item()
    return -0.5 * (D * math.log(2 * math.pi) + log_det + trace)


def test_function_style_programs_reach_the_maximum_likelihood():
    train, valid = linear_gaussian_data(600, seed=1), linear_gaussian_data(300, seed=2)
    pyro.clear_param_store()
    torch.manual_seed(0)
    model, guide = tutorial_programs()
    result = fit(model, guide, (train, valid), objective="analytic-kl", epochs=60, batch_size=50,
                 learning_rate=0.1, lr_decay=0.93, log=lambda s: None)
    w, b = pyro.param("W").detach(), pyro.param("b").detach()
    best = max_log_likelihood(train)
    reached = exact_log_likelihood(train, w, b).mean().item()
    assert reached <= best + 1e-3          # nothing beats the closed-form maximum ...
    assert reached > best - 0.01           # ... and training got there (nats per example)
    first, last = result.history[0]["valid_elbo"], result.history[-1]["valid_elbo"]
    assert last > first + 1.0
    # The guide is the exact posterior family: its ELBO meets log p(x) (gap = KL(q || posterior)).
    exact_valid = exact_log_likelihood(valid, w, b).mean().item()
    assert exact_valid - 0.03 < last <= exact_valid + 0.03


def _fit_tutorial(run_dir, epochs, resume=False, **options):
    pyro.clear_param_store()
    torch.manual_seed(0)
    model, guide = tutorial_programs()
    data = (linear_gaussian_data(300, seed=1), linear_gaussian_data(100, seed=2), linear_gaussian_data(100, seed=3))
    options = {"objective": "elbo", "batch_size": 64, "learning_rate": 0.02, **options}
    result = fit(model, guide, data, epochs=epochs, run_dir=run_dir, resume=resume, log=lambda s: None, **options)
    params = {name: value.detach().clone() for name, value in pyro.get_param_store().named_parameters()}
    return result, params


def test_fit_refuses_a_sweep_directory(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text("{}")
    with pytest.raises(CheckpointError, match="is a sweep directory .*choose a new run_dir"):
        _fit_tutorial(sweep_dir, epochs=1)
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["sweep.json"]


def test_fit_under_torchrun_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    """A script calling fit launched with torchrun --nproc_per_node 2 trained the whole data set
    in each rank, both writing one run_dir, where `torchrun -m pyro_vae.cli train` splits every
    batch: refused in one sentence."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match="fit trains in one process, but torchrun started 2"):
        _fit_tutorial(run_dir, epochs=1)
    assert not run_dir.exists()


def test_resumed_fit_of_function_programs_equals_uninterrupted(tmp_path):
    whole, whole_params = _fit_tutorial(tmp_path / "whole", epochs=4)
    _fit_tutorial(tmp_path / "parts", epochs=2)
    parts, parts_params = _fit_tutorial(tmp_path / "parts", epochs=4, resume=True)
    assert [row["valid_elbo"] for row in parts.history] == [row["valid_elbo"] for row in whole.history]
    assert set(parts_params) == {"W", "b", "encoder$$$weight", "encoder$$$bias"}
    for name, value in whole_params.items():
        assert torch.equal(parts_params[name], value), name
    # The CLI's files: checkpoints, metrics (one row per epoch), summary, curves.
    run = tmp_path / "parts"
    for name in ("checkpoint_last.pt", "checkpoint_best.pt", "metrics.csv", "summary.json", "curves.png"):
        assert (run / name).is_file(), name
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 4
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_epoch"] == parts.best_epoch and summary["unit"] == "nats per example"
    # The best epoch's parameters were loaded back into the param store.
    best = torch.load(run / "checkpoint_best.pt", weights_only=True)
    assert torch.equal(best["model"]["W"], pyro.param("W").detach())


def test_resumed_fit_rebuilds_a_best_checkpoint_a_kill_left_behind_the_last(tmp_path):
    """A kill after an epoch's checkpoint_last.pt, before its checkpoint_best.pt, left the best
    checkpoint of an earlier epoch; resume=True read that stale file back and loaded, scored
    and summarised the wrong epoch. It is derived again from the last checkpoint, as the CLI's
    --resume does."""
    whole, whole_params = _fit_tutorial(tmp_path / "whole", epochs=2, figures=False)
    assert whole.best_epoch == 2
    run = tmp_path / "parts"
    _fit_tutorial(run, epochs=1, figures=False)
    stale = (run / "checkpoint_best.pt").read_bytes()
    _fit_tutorial(run, epochs=2, resume=True, figures=False)
    (run / "checkpoint_best.pt").write_bytes(stale)  # epoch 2 committed, its best not yet written
    parts, parts_params = _fit_tutorial(run, epochs=2, resume=True, figures=False)
    assert parts.best_epoch == 2 and json.loads((run / "summary.json").read_text())["best_epoch"] == 2
    for name, value in whole_params.items():
        assert torch.equal(parts_params[name], value), name


def test_fit_refuses_to_resume_with_fewer_epochs_than_trained_and_writes_nothing(tmp_path):
    """resume=True with epochs below those trained returned the longer run, and wrote its
    config.toml and summary again as if it had been asked for; the CLI's --epochs refuses it."""
    run = tmp_path / "run"
    _fit_tutorial(run, epochs=3, figures=False)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match="epochs=2 is fewer than the 3 epochs .* give epochs=3 or more"):
        _fit_tutorial(run, epochs=2, resume=True, figures=False)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_fit_refuses_to_resume_with_epochs_that_end_before_the_epoch_it_stopped_inside(tmp_path, monkeypatch):
    """A fit stopped by a signal inside epoch 2, resumed with epochs=1, returned and wrote a finished
    1-epoch run whose checkpoint_last.pt held the steps of epoch 2 as well."""
    from faults import interrupt_at_step
    from pyro_vae.errors import TrainingInterrupted

    stop_interrupting = interrupt_at_step(monkeypatch, 6)  # the second step of epoch 2 (5 steps an epoch)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        _fit_tutorial(run, epochs=3, figures=False)
    stop_interrupting()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=r"^epochs=1 would end .* after epoch 1, but it stopped inside epoch 2 \(2 of "
                       r"its 5 steps trained\), and a run is not cut back; give epochs=2 or more\.$"):
        _fit_tutorial(run, epochs=1, resume=True, figures=False)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert _fit_tutorial(run, epochs=2, resume=True, figures=False)[0].summary["epochs"] == 2


def test_an_interrupted_fit_says_to_continue_it_with_fit_not_the_clis_resume(tmp_path, monkeypatch):
    """A fit stopped by SIGINT said "checkpoint saved, continue with --resume RUN": a flag of the
    command line, which refuses a run fit trained on tensors; it now names fit's own resume=True."""
    from faults import interrupt_at_step
    from pyro_vae.cli import main
    from pyro_vae.errors import TrainingInterrupted

    stop_interrupting = interrupt_at_step(monkeypatch, 6)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as stopped:
        _fit_tutorial(run, epochs=3, figures=False)
    assert str(stopped.value) == (f"stopped by SIGINT after step 7 (epoch 2); checkpoint saved, continue with "
                                  f"fit(..., run_dir={str(run)!r}, resume=True).")
    stop_interrupting()
    assert main(["train", "--resume", str(run)]) == 2  # the advice it gave before: refused
    assert _fit_tutorial(run, epochs=3, resume=True, figures=False)[0].summary["epochs"] == 3


@pytest.mark.parametrize("objective", ["elbo", "analytic-kl", "iwae", "iwae-dreg"])
def test_fit_refuses_a_guide_its_objective_cannot_train_before_writing(tmp_path, objective):
    """A guide with a Bernoulli latent failed at the first step, after the run directory was made:
    objective='elbo' with a ValueError sending the user to implementation='pyro', which fit does not
    take, 'iwae-dreg' with a TypeError; a function-style guide (as Pyro's tutorials write them) failed
    'iwae-dreg' alike. fit now refuses both in one sentence before anything is written, naming what
    trains them; Trace_ELBO, the fix it names, trains the Bernoulli guide."""
    from pyro.infer import Trace_ELBO

    encoder, decoder = nn.Linear(D, 1), nn.Linear(1, D)

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(torch.full((x.shape[0], 1), 0.5)).to_event(1))
            pyro.sample("x", dist.Normal(decoder(z), 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(logits=encoder(x)).to_event(1))

    pyro.clear_param_store()
    data = (linear_gaussian_data(60, seed=1), linear_gaussian_data(20, seed=2), linear_gaussian_data(20, seed=3))
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match=rf"^objective='{objective}' differentiates through the guide's draws, and "
                       r"its site 'z' \(Independent\) cannot be reparameterized \(its gradient would need a "
                       r"score-function term\); pass objective=pyro\.infer\.Trace_ELBO\(\), which has one, or "
                       r"TraceEnum_ELBO\(\) to sum a discrete latent out\.$"):
        fit(model, guide, data, objective=objective, epochs=1, run_dir=run, log=lambda s: None)
    assert not run.exists()
    fit(model, guide, data, objective=Trace_ELBO(), epochs=1, run_dir=run, figures=False, log=lambda s: None)

    pyro.clear_param_store()
    model, guide = tutorial_programs()  # reparameterized, but a function: DReG needs a module to hold fixed
    with pytest.raises(ConfigError, match=r"^objective='iwae-dreg' evaluates log q with the guide's parameters held "
                       r"fixed, which needs the guide to be a torch\.nn\.Module, and this one is a function; use "
                       r"objective='iwae' \(the same bound, with the IWAE gradient\) or write the guide as a "
                       r"PyroModule\.$"):
        fit(model, guide, data, objective="iwae-dreg", epochs=1, run_dir=tmp_path / "dreg", log=lambda s: None)
    assert not (tmp_path / "dreg").exists()


def test_fit_refuses_a_kl_warmup_to_beta_0_before_writing(tmp_path):
    """beta=0 with kl_warmup_epochs trained with the KL weight 0 throughout, as if no warm-up
    had been given, while the summary named a warm-up; the CLI refuses the pair."""
    with pytest.raises(ConfigError, match="kl_warmup_epochs=2 has no effect with beta=0"):
        _fit_tutorial(tmp_path / "run", epochs=1, beta=0.0, kl_warmup_epochs=2)
    assert not (tmp_path / "run").exists()


def test_fit_refuses_to_overwrite_or_resume_nothing(tmp_path):
    _fit_tutorial(tmp_path / "run", epochs=1)
    before = (tmp_path / "run" / "checkpoint_last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a training run; continue it with resume=True"):
        _fit_tutorial(tmp_path / "run", epochs=1)
    assert (tmp_path / "run" / "checkpoint_last.pt").read_bytes() == before
    with pytest.raises(CheckpointError, match="resume=True needs the run_dir"):
        _fit_tutorial(tmp_path / "none", epochs=1, resume=True)


@pytest.mark.parametrize("changed", [{"learning_rate": 0.05}, {"batch_size": 32}, {"seed": 1},
                                     {"objective": "analytic-kl"}, {"beta": 2.0}])
def test_fit_refuses_to_resume_with_other_settings(tmp_path, changed):
    """resume=True continues the run exactly, so a setting that would make it another run
    (learning rate, batch, latent noise's seed, objective, KL weight) is refused, unwritten."""
    from pyro_vae.errors import ConfigError

    _fit_tutorial(tmp_path / "run", epochs=1)
    files = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    (key, value), = changed.items()
    with pytest.raises(ConfigError, match=f"trained with {key}=.*, not {value!r}; give its value"):
        _fit_tutorial(tmp_path / "run", epochs=2, resume=True, **changed)
    assert files == {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}


def test_fit_refuses_to_resume_on_other_data(tmp_path):
    """resume=True checked the settings but not the data: a run begun on one training set went on
    training on another as if it were the same run. Now the splits' digest is recorded and a
    mismatch refused, nothing written; the same tensors resume."""
    from pyro_vae.errors import ConfigError
    from pyro_vae.fit import as_dataset, data_digest

    pyro.clear_param_store()
    first = (linear_gaussian_data(300, seed=1), linear_gaussian_data(100, seed=2))
    model, guide = tutorial_programs()
    options = dict(objective="elbo", batch_size=64, run_dir=tmp_path / "run", log=lambda s: None, figures=False)
    fit(model, guide, first, epochs=1, **options)
    files = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    other = (first[0].clone(), first[1].clone())
    other[0][7, 0] += 0.5  # one value of one training example
    with pytest.raises(ConfigError, match="which was trained on other data .*give the same data or fit a new run_dir"):
        fit(model, guide, other, epochs=2, resume=True, **options)
    assert files == {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    assert fit(model, guide, first, epochs=2, resume=True, **options).history[-1]["epoch"] == 2
    assert data_digest(as_dataset(first)) == data_digest(as_dataset((first[0].clone(), first[1].clone())))


def tiny_images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g)


def tiny_dataset(binarize: str) -> ImageDataset:
    images = [tiny_images(n, seed) for n, seed in ((200, 1), (50, 2), (50, 3))]
    if binarize == "dynamic":  # as load_dataset: grey training images, evaluation splits drawn once
        images[1:] = [torch.bernoulli(x, generator=torch.Generator().manual_seed(0)) for x in images[1:]]
    return ImageDataset("tiny", *(Split(x) for x in images), binarize=binarize)


def test_fit_of_a_library_model_writes_a_run_the_cli_can_reopen(tmp_path):
    config = Config(model=ModelConfig(latent_dim=2, hidden_dims=[16]))
    model, guide = build_vae(config.model, (1, 8, 8))
    result = fit(model, guide, tiny_dataset("dynamic"), epochs=2, batch_size=50, run_dir=tmp_path / "run",
                 config=config, log=lambda s: None)
    assert {p.name for p in result.figures} == {"samples.png", "reconstructions.png", "curves.png"}
    from pyro_vae.runs import open_run

    run = open_run(tmp_path / "run")
    for name, value in model.state_dict().items():
        assert torch.equal(run.model.state_dict()[name], value), name
    from pyro_vae.errors import ConfigError

    with pytest.raises(ConfigError, match=r"the config given differs from the one it was begun with \(its config"):
        fit(model, guide, tiny_dataset("dynamic"), epochs=3, batch_size=50, run_dir=tmp_path / "run", resume=True,
            log=lambda s: None)  # without its config the run's files would lose what the CLI reads


def test_fits_config_toml_records_the_training_fit_did(tmp_path):
    """fit trains with its own arguments, not the config's [train] table: config.toml says
    what ran (so `pyro-vae train --resume` and the figures read the truth); a config
    without a run_dir would be saved nowhere and is refused."""
    from pyro_vae.config import TrainConfig
    from pyro_vae.errors import ConfigError
    from pyro_vae.runs import read_run_config

    config = Config(model=ModelConfig(latent_dim=2, hidden_dims=[16]),
                    train=TrainConfig(learning_rate=0.5, batch_size=7, objective="elbo", patience=3))
    model, guide = build_vae(config.model, (1, 8, 8))
    with pytest.raises(ConfigError, match="needs a run_dir"):
        fit(model, guide, tiny_dataset("dynamic"), epochs=1, config=config, log=lambda s: None)
    other = Config(model=ModelConfig(latent_dim=3, hidden_dims=[16]))  # not the model's own
    with pytest.raises(ConfigError, match=r"config's \[model\] table does not describe the model given"):
        fit(model, guide, tiny_dataset("dynamic"), epochs=1, config=other, run_dir=tmp_path / "other",
            log=lambda s: None)
    assert not (tmp_path / "other").exists()
    fit(model, guide, tiny_dataset("dynamic"), objective="iwae", k=3, epochs=1, batch_size=50, learning_rate=2e-3,
        run_dir=tmp_path / "run", config=config, figures=False, log=lambda s: None)
    train = read_run_config(tmp_path / "run").train
    assert (train.objective, train.k, train.batch_size, train.learning_rate, train.epochs, train.patience) == (
        "iwae", 3, 50, 2e-3, 1, 0)
    assert config.train.learning_rate == 0.5  # the caller's object is left as it was
    fit(model, guide, tiny_dataset("dynamic"), objective="iwae", k=3, epochs=2, batch_size=50, learning_rate=2e-3,
        run_dir=tmp_path / "run", config=config, figures=False, resume=True, log=lambda s: None)
    assert read_run_config(tmp_path / "run").train.epochs == 2


def test_fit_checks_the_likelihoods_support_in_python_terms():
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[16]), (1, 8, 8))
    with pytest.raises(DataError, match=r"binarize them \(pyro_vae\.binarize\(x\)") as err:
        fit(model, guide, tiny_dataset("none"), epochs=1, log=lambda s: None)
    assert "--" not in str(err.value)


def test_batches_are_binary_for_a_dynamically_binarized_training_split():
    data = tiny_dataset("dynamic")
    batches = list(data.batches("train", batch_size=64, generator=torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [64, 64, 64, 8]
    stacked = torch.cat(batches)
    assert ((stacked == 0) | (stacked == 1)).all()
    # Each pixel is a Bernoulli(grey level) draw: over the 200 x 64 pixels, the mean of the draws
    # matches the mean grey level to within a few standard errors (sd 0.5 / sqrt(12800) = 0.0044).
    assert abs(stacked.mean() - data.train.images.mean()) < 0.02
    # Redrawn per pass: two passes differ; evaluation splits come as loaded, in order.
    again = torch.cat(list(data.batches("train", batch_size=64, shuffle=False)))
    assert not torch.equal(again, torch.cat(list(data.batches("train", batch_size=64, shuffle=False))))
    assert torch.equal(torch.cat(list(data.batches("valid", batch_size=16))), data.valid.images)
    assert torch.equal(pyro_vae.binarize(torch.tensor([0.0, 1.0])), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("objective,options", [("elbo", {"k": 50}), ("iwae", {"k": 3, "num_particles": 4}),
                                               ("analytic-kl", {"k": 5})])
def test_fit_refuses_k_or_num_particles_its_objective_does_not_use(objective, options):
    from pyro_vae.errors import ConfigError

    model, guide = tutorial_programs()
    with pytest.raises(ConfigError, match="has no effect with objective"):
        fit(model, guide, (linear_gaussian_data(20, 0), linear_gaussian_data(10, 1)), objective=objective,
            epochs=1, log=lambda s: None, **options)


def test_fit_summary_has_the_test_elbos_standard_error_and_kind(tmp_path, monkeypatch):
    import sys

    fit_module = sys.modules["pyro_vae.fit"]  # the module; pyro_vae.fit is the function
    test = {"elbo": -30.0, "elbo_stderr": 0.25, "reconstruction": -29.0, "reconstruction_stderr": 0.5, "kl": 1.0,
            "kl_stderr": 0.125}  # the test split's, stubbed
    monkeypatch.setattr(fit_module, "evaluate_elbo", lambda *a, **k: test)
    config = Config(model=ModelConfig(latent_dim=2, hidden_dims=[16]))
    model, guide = build_vae(config.model, (1, 8, 8))
    result = fit(model, guide, tiny_dataset("dynamic"), epochs=1, batch_size=50, run_dir=tmp_path / "run",
                 config=config, figures=False, log=lambda s: None)
    summary = result.summary
    assert summary["test_elbo_stderr"] == 0.25
    assert summary["test_reconstruction_stderr"] == 0.5 and summary["test_kl_stderr"] == 0.125
    assert summary["train_objective_name"] == result.train_objective_name == "ELBO"
    assert summary["bits_per_dim"] == pytest.approx(30.0 / (64 * math.log(2)), rel=1e-12)  # 8x8 binary pixels
    assert "binary" in summary["kind"] and summary == json.loads((tmp_path / "run" / "summary.json").read_text())


def test_fit_without_a_config_still_says_the_kind_of_a_plain_models_test_elbo(tmp_path):
    """A Gaussian VAE fitted without config= had no "kind" in its summary, though its test ELBO
    is a bound on a density, which a binary-data result must not be ranked against."""
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[16], likelihood="gaussian"), (1, 8, 8))
    result = fit(model, guide, tiny_dataset("none"), epochs=1, batch_size=50, run_dir=tmp_path / "run",
                 figures=False, log=lambda s: None)
    assert (result.summary["kind"], result.summary["quantity"]) == ("density (not comparable)", "log p(x)")
    cvae, cguide = build_vae(ModelConfig(model="cvae", latent_dim=2, hidden_dims=[16]), (1, 8, 8), num_classes=3)
    plain = tiny_dataset("dynamic")
    splits = [Split(part.images, torch.arange(len(part.images)) % 3) for part in (plain.train, plain.valid, plain.test)]
    labelled = fit(cvae, cguide, ImageDataset("tiny", *splits, binarize="dynamic"), epochs=1, batch_size=50,
                   run_dir=tmp_path / "cvae", figures=False, log=lambda s: None)
    assert "kind" not in labelled.summary  # log p(x | y): not said without its config, rather than said wrong


@pytest.mark.parametrize("model_kind", ["vae", "ae"])
def test_fit_on_binary_tensors_calls_an_8_bit_likelihoods_test_number_a_mass_on_binary_data(tmp_path, model_kind):
    """A discretized-logistic VAE (or autoencoder) fitted on 0/1 tensors had "probability mass on 8-bit
    data" in its summary, while importance_log_likelihood called its numbers on the same images a mass
    on binary data."""
    from pyro_vae import importance_log_likelihood

    x = torch.bernoulli(torch.full((120, 1, 8, 8), 0.4), generator=torch.Generator().manual_seed(0))
    model, guide = build_vae(ModelConfig(model=model_kind, latent_dim=2, hidden_dims=[16],
                                         likelihood="discretized-logistic"), (1, 8, 8))
    result = fit(model, guide, (x[:60], x[60:90], x[90:]), epochs=1, batch_size=30, run_dir=tmp_path / "run",
                 figures=False, log=lambda s: None)
    assert result.summary["kind"] == "probability mass on binary data"
    if model_kind == "vae":
        assert importance_log_likelihood(model, guide, x[90:], k=2).kind == result.summary["kind"]
    grey = torch.randint(0, 256, (120, 1, 8, 8), generator=torch.Generator().manual_seed(1)) / 255.0
    result = fit(model, guide, (grey[:60], grey[60:90], grey[90:]), epochs=1, batch_size=30,
                 run_dir=tmp_path / "grey", figures=False, log=lambda s: None)
    assert result.summary["kind"] == "probability mass on 8-bit data"


def test_fit_of_an_autoencoder_reports_its_reconstruction_term_not_an_elbo(tmp_path):
    """An autoencoder (no prior, no KL) has no ELBO or log p(x): fit names its objective and
    summary as the CLI does, and refuses the options that need a KL term."""
    from pyro_vae.errors import ConfigError

    config = Config(model=ModelConfig(model="ae", latent_dim=2, hidden_dims=[16]))
    model, guide = build_vae(config.model, (1, 8, 8))
    for options, word in (({"beta": 2.0}, "beta=2.0"), ({"kl_warmup_epochs": 2}, "kl_warmup_epochs=2"),
                          ({"objective": "analytic-kl"}, "objective='analytic-kl'")):
        with pytest.raises(ConfigError, match=f"{word} has no effect on a plain autoencoder"):
            fit(model, guide, tiny_dataset("dynamic"), epochs=1, log=lambda s: None, **options)
    result = fit(model, guide, tiny_dataset("dynamic"), epochs=1, batch_size=50, run_dir=tmp_path / "run",
                 config=config, figures=False, log=lambda s: None)
    summary = result.summary
    assert result.train_objective_name == summary["train_objective_name"] == "reconstruction log p(x | code)"
    assert "test_elbo" not in summary and "bits_per_dim" not in summary
    # the reconstruction term's own kind (dynamically binarized data: a mass on binary data)
    assert (summary["kind"], summary["quantity"]) == ("probability mass on binary data", "log p(x | code)")
    assert summary["test_reconstruction_stderr"] > 0
    assert summary["selection"] == "best validation reconstruction log p(x | code)"


def test_fit_on_train_and_valid_tensors_reports_no_test_number(tmp_path):
    """(train, valid) tensors have no test split: as_dataset lets the validation split stand in
    for one, and the summary called the ELBO of those images, which chose the best epoch, the
    test ELBO; now it reports none."""
    pyro.clear_param_store()
    model, guide = tutorial_programs()
    result = fit(model, guide, (linear_gaussian_data(200, 1), linear_gaussian_data(50, 2)), epochs=1, batch_size=50,
                 run_dir=tmp_path / "run", figures=False, log=lambda s: None)
    assert "test_elbo" not in result.summary and "none given" in result.summary["test_split"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == result.summary


def test_fit_gives_no_standard_error_for_a_split_of_one_image(tmp_path):
    """A validation or test split of one image printed "valid ELBO ... ± 0.00" and recorded a
    standard error of 0, as if the mean were exact; one value has no spread to estimate it from,
    so the standard error is unknown: NaN in the history, "± nan" on the console and null in
    summary.json (as for a training epoch of one batch), and importance_log_likelihood says the same."""
    from pyro_vae import importance_log_likelihood

    pyro.clear_param_store()
    model, guide = tutorial_programs()
    lines = []
    result = fit(model, guide, (linear_gaussian_data(200, 1), linear_gaussian_data(1, 2), linear_gaussian_data(1, 3)),
                 epochs=1, batch_size=50, run_dir=tmp_path / "run", figures=False, log=lines.append)
    assert math.isnan(result.history[-1]["valid_elbo_stderr"]) and math.isnan(result.history[-1]["valid_kl_stderr"])
    assert "± 0.00" not in lines[0] and "valid ELBO" in lines[0] and "± nan" in lines[0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_elbo_stderr"] is None and summary["test_kl_stderr"] is None
    estimate = importance_log_likelihood(model, guide, linear_gaussian_data(1, 4), k=10)
    assert math.isnan(estimate.stderr) and math.isnan(estimate.summary()["log_likelihood_stderr"])


def test_fit_refuses_programs_without_a_data_plate_before_training(tmp_path):
    """The tutorial's programs with the batch sampled as one event (no pyro.plate) trained an epoch
    and then failed validating with torch's "zero-dimensional tensor (at position 0) cannot be
    concatenated"; fit now refuses them before training or writing, in a sentence naming the plate."""
    pyro.clear_param_store()
    encoder = nn.Linear(D, 2)

    def model(x):
        w = pyro.param("W", 0.1 * torch.ones(D, 1))
        z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 1), 1.0).to_event(2))
        pyro.sample("x", dist.Normal(z @ w.T, SIGMA).to_event(2), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        loc, raw = encoder(x).split(1, -1)
        pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(2))

    lines = []
    with pytest.raises(DataError, match=r"a batch of 2 examples, not one per example: .*pyro\.plate"):
        fit(model, guide, (linear_gaussian_data(200, 1), linear_gaussian_data(50, 2)), epochs=1, batch_size=50,
            run_dir=tmp_path / "run", log=lines.append)
    assert lines == [] and not (tmp_path / "run").exists()


def test_compare_of_a_fit_run_without_config_says_what_it_lacks(tmp_path, capsys):
    """It said the run was "neither a run directory nor a sweep directory" and to give "the
    --run-dir of a training run", though it is one, trained by fit()."""
    from pyro_vae.cli import main

    pyro.clear_param_store()
    model, guide = tutorial_programs()
    run = tmp_path / "run"
    fit(model, guide, (linear_gaussian_data(200, 1), linear_gaussian_data(50, 2)), epochs=1, batch_size=50,
        run_dir=run, figures=False, log=lambda s: None)
    assert main(["compare", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"pyro-vae: error: {run} has a checkpoint and a summary but no config.toml, where compare reads a run's "
        "settings (a run of fit() without config=); fit it with config= (the Config its model was built from), or "
        "read its summary.json in Python.\n")


def test_a_fit_run_on_other_data_than_its_config_names_is_not_scored_on_the_configs(tmp_path, capsys):
    """fit on 8x8 tensors (or an ImageDataset named 'tiny') with a config whose [data] table says
    fashion-mnist: the checkpoint records the data that trained, and `pyro-vae evaluate`/`train
    --resume` refuse in one sentence instead of loading Fashion-MNIST for a model that never saw it."""
    from pyro_vae.cli import main
    from pyro_vae.errors import DataError
    from pyro_vae.runs import LAST, load_checkpoint, open_run

    config = Config(model=ModelConfig(latent_dim=2, hidden_dims=[16]))
    assert config.data.dataset == "fashion-mnist"
    data = tiny_dataset("dynamic")
    tensors = tuple(pyro_vae.binarize(split.images) for split in (data.train, data.valid, data.test))
    for given, recorded in ((tensors, "tensors"), (data, "tiny")):
        run_dir = tmp_path / recorded
        model, guide = build_vae(config.model, (1, 8, 8))
        fit(model, guide, given, epochs=1, batch_size=50, run_dir=run_dir, config=config, figures=False,
            log=lambda s: None)
        assert load_checkpoint(run_dir / LAST)["fit_data"] == recorded
        with pytest.raises(DataError, match=r"was trained by pyro_vae\.fit\(\) on .* not on the fashion-mnist"):
            open_run(run_dir).dataset()
        files = sorted(p.name for p in run_dir.iterdir())
        capsys.readouterr()
        assert main(["evaluate", str(run_dir)]) == 2
        assert main(["train", "--resume", str(run_dir), "--epochs", "2", "--no-progress"]) == 2
        assert capsys.readouterr().err.count("was trained by pyro_vae.fit()") == 2
        assert sorted(p.name for p in run_dir.iterdir()) == files  # nothing written


@pytest.mark.parametrize("device,says", [("gpu", r"device='gpu' is not a device name: the device must be cpu, cuda or "
                                                 r"cuda:N"),
                                         ("cuda:x", r"device='cuda:x' is not a device name"),
                                         ("cuda:99", r"device 'cuda:99' was asked for but ")])
def test_fit_checks_its_device_as_the_cli_checks_device_before_writing(tmp_path, device, says):
    from pyro_vae.errors import ConfigError

    config = Config(model=ModelConfig(latent_dim=2, hidden_dims=[16]))
    model, guide = build_vae(config.model, (1, 8, 8))
    with pytest.raises(ConfigError, match=says) as err:
        fit(model, guide, tiny_dataset("dynamic"), epochs=1, run_dir=tmp_path / "run", config=config, device=device,
            log=lambda s: None)
    assert "--" not in str(err.value) and not (tmp_path / "run").exists()


@pytest.mark.parametrize("options,message", [
    ({"beta": -1.0}, "beta must be at least 0"),  # trained with a KL weight of -1
    ({"epochs": 0}, "epochs must be between 1"),  # returned an empty history
    ({"objective": "iwae", "k": 0}, "k must be between 1"),  # a ZeroDivisionError inside Pyro
    ({"batch_size": 0}, "batch_size must be between 1"),
    ({"seed": -1}, "seed must be between 0"),  # NumPy's traceback
    ({"lr_decay": 0.0}, "lr_decay must be positive"),
    ({"epochs": 1.5}, "epochs must be a whole number, not 1.5"),  # trained 2 epochs
    ({"objective": "iwae", "k": 2.5}, "k must be a whole number, not 2.5"),  # "unknown objective 'iwae'"
    ({"num_particles": 2.5}, "num_particles must be a whole number, not 2.5"),  # "unknown objective 'elbo'"
    ({"seed": 1.5}, "seed must be a whole number, not 1.5"),  # NumPy's "Cannot cast scalar" TypeError
    ({"batch_size": True}, "batch_size must be a whole number, not True"),  # trained with batches of 1
    # iwae-dreg trains, but the sentence offered three objectives
    ({"objective": "iwea"}, "unknown objective 'iwea'; choose elbo, analytic-kl, iwae or iwae-dreg, or pass"),
])
def test_fit_checks_its_numbers_as_the_cli_checks_its_flags(options, message, tmp_path):
    from pyro_vae import ModelConfig, build_vae, fit
    from pyro_vae.errors import ConfigError

    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 28, 28))
    x = torch.bernoulli(torch.full((40, 1, 28, 28), 0.3))
    with pytest.raises(ConfigError, match=message):
        fit(model, guide, (x[:20], x[20:]), run_dir=tmp_path / "run", figures=False, **options)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("splits,message", [
    # a float64 validation split (from NumPy) failed after an epoch of training, in torch's matmul
    (lambda x: (x[:20], x[20:].double()), r"the valid examples are torch.float64 but the model's parameters are "
                                          r"torch.float32; pass x.to\(torch.float32\)"),
    (lambda x: (x[:20].double(), x[20:].double()), r"the train examples are torch.float64"),
    # flat images: "The size of tensor a (28) must match the size of tensor b (784)" inside the likelihood
    (lambda x: (x[:20].flatten(1), x[20:].flatten(1)), r"the train examples have shape \(784,\) but the model "
                                                       r"expects \(1, 28, 28\)"),
])
def test_fit_refuses_data_its_model_cannot_read_before_writing(splits, message, tmp_path):
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 28, 28))
    x = torch.bernoulli(torch.full((40, 1, 28, 28), 0.3))
    with pytest.raises(DataError, match=message):
        fit(model, guide, splits(x), run_dir=tmp_path / "run", figures=False, log=lambda s: None)
    assert not (tmp_path / "run").exists()


def test_fit_refuses_analytic_kl_where_the_kl_has_no_closed_form(tmp_path):
    """A mixture prior trained 'analytic-kl' with a Monte Carlo KL without a word (the CLI refuses it)."""
    from pyro_vae.errors import ConfigError

    x = torch.bernoulli(torch.full((40, 1, 28, 28), 0.3))
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8], prior="mog", prior_components=3), (1, 28, 28))
    with pytest.raises(ConfigError, match="needs KL\\(q \\|\\| p\\) in closed form.*'z'"):
        fit(model, guide, (x[:20], x[20:]), objective="analytic-kl", epochs=1)
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 28, 28))  # N(0, I): it has one
    assert fit(model, guide, (x[:20], x[20:]), objective="analytic-kl", epochs=1, log=lambda s: None).history


def test_fit_refuses_iwae_dreg_with_a_flow_it_cannot_invert_before_writing(tmp_path):
    """A planar flow guide with objective='iwae-dreg' failed at the first step with Pyro's
    KeyError ("expected to find key in intermediates cache"), after the run directory was made
    (the CLI refuses the pair). Now one sentence, nothing written, and the RNG as it was;
    the invertible flows train."""
    from pyro_vae.errors import ConfigError

    x = torch.bernoulli(torch.full((40, 1, 4, 4), 0.3))
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8], flow="planar", flow_steps=2), (1, 4, 4))
    state = torch.get_rng_state()
    with pytest.raises(ConfigError, match="iwae-dreg evaluates log q at a given 'z', which needs an invertible flow"):
        fit(model, guide, (x[:20], x[20:]), objective="iwae-dreg", k=3, epochs=1, run_dir=tmp_path / "run",
            figures=False)
    assert not (tmp_path / "run").exists() and torch.equal(torch.get_rng_state(), state)
    for flow in ("iaf", "householder"):
        model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8], flow=flow, flow_steps=2), (1, 4, 4))
        assert fit(model, guide, (x[:20], x[20:]), objective="iwae-dreg", k=3, epochs=1, log=lambda s: None,
                   figures=False).history


def test_fit_leaves_the_callers_random_states_as_they_were(tmp_path):
    """fit draws from its own seed; the caller's torch, NumPy and Python streams go on from
    where they were, on return and on an error raised mid-fit."""
    import random

    import numpy as np

    def draws():
        return torch.rand(3), np.random.rand(3), random.random()

    def seed_all(seed):
        torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)

    def failing_log(line: str) -> None:  # the first epoch's line: fit has seeded and drawn by then
        raise RuntimeError("stopped mid-fit")

    data = (linear_gaussian_data(100, seed=1), linear_gaussian_data(50, seed=2))
    seed_all(123)
    expected = draws()
    raised = []
    for log in (lambda line: None, failing_log):
        pyro.clear_param_store()
        model, guide = tutorial_programs()  # initialised before the caller's seed: not part of the stream
        seed_all(123)
        try:
            fit(model, guide, data, epochs=2, seed=5, log=log)
        except RuntimeError as err:
            raised.append(log is failing_log and "stopped mid-fit" in str(err))
        got = draws()
        assert torch.equal(got[0], expected[0]), "torch"
        assert np.array_equal(got[1], expected[1]), "numpy"
        assert got[2] == expected[2], "random"
    assert raised == [True]


def test_fit_refuses_a_run_dir_that_another_process_trains_in_and_writes_nothing(tmp_path):
    # as `pyro-vae train` (runs.run_dir_lock): flock conflicts across open files, so this
    # process's own descriptor stands in for the other process
    import fcntl
    import os

    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        pyro.set_rng_seed(0)
        model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 4, 4))
        data = (torch.rand(32, 1, 4, 4).round(), torch.rand(8, 1, 4, 4).round())
        with pytest.raises(CheckpointError, match="is being trained by another process"):
            fit(model, guide, data, epochs=1, batch_size=16, run_dir=run, figures=False, log=lambda line: None)
    finally:
        os.close(fd)
    assert list(run.iterdir()) == []


def test_training_starts_from_the_batch_norm_statistics_the_model_was_given(monkeypatch):
    """Three checks before the first step ran a batch-normalised guide in training mode, each
    moving its running statistics by one or two training images: fit's check of one value per
    example, the guide's pairing with the model (one example encoded per split), and the
    trainer's probe of the guide's latent sites (the CLI's path too)."""
    from pyro_vae.inference import train

    pyro.set_rng_seed(0)
    model, guide = build_vae(ModelConfig(network="conv", batch_norm=True, latent_dim=2, hidden_dims=[16],
                                         conv_channels=[4, 8]), (1, 28, 28))
    built = {**{f"m.{k}": v.clone() for k, v in model.state_dict().items()},
             **{f"g.{k}": v.clone() for k, v in guide.state_dict().items()}}

    class Started(Exception):
        pass

    def first_epoch(trainer, *args, **kwargs):
        now = {**{f"m.{k}": v for k, v in trainer.model.state_dict().items()},
               **{f"g.{k}": v for k, v in trainer.guide.state_dict().items()}}
        assert all(torch.equal(now[name], value) for name, value in built.items()), \
            [name for name, value in built.items() if not torch.equal(now[name], value)]
        raise Started

    monkeypatch.setattr(train.Trainer, "train_epoch", first_epoch)
    images = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    with pytest.raises(Started):
        fit(model, guide, (images, images[:4]), epochs=1, batch_size=4)


@pytest.mark.parametrize("kind", ["m2", "adgm"])
def test_fit_refuses_a_semi_supervised_model_in_one_sentence_before_writing(kind, tmp_path):
    """An M2 or ADGM pair failed at the first step with the fast ELBO's bare ValueError advising
    implementation='pyro', which fit does not take; fit now says where such a model is trained."""
    model, guide = build_vae(ModelConfig(model=kind, latent_dim=2, hidden_dims=(8,)), (1, 4, 4), 3)
    x, y = torch.bernoulli(torch.full((12, 1, 4, 4), 0.5)), torch.arange(12) % 3
    data = ImageDataset("t", Split(x, y), Split(x[:4], y[:4]), Split(x[:4], y[:4]), binarize="none")
    lines = []
    with pytest.raises(ConfigError, match=r"fit does not train a semi-supervised .*SemiSupervisedTrainer\.$"):
        fit(model, guide, data, epochs=1, batch_size=4, run_dir=tmp_path / "run", log=lines.append)
    assert lines == [] and not (tmp_path / "run").exists()


def test_parameters_left_non_finite_by_an_epochs_last_step_are_not_committed(tmp_path, monkeypatch):
    """A step whose loss was finite but whose gradient was not left NaN weights, and each step
    checks its loss alone: on an epoch's last step the epoch was committed with them, a
    checkpoint_last.pt that no run could resume. The trainer now stops before committing it."""
    from pyro_vae.errors import TrainingError
    from pyro_vae.inference.checkpoint import LAST, load_checkpoint
    from pyro_vae.inference.train import Trainer

    real = Trainer.train_epoch

    def train_epoch(self):
        bound = real(self)
        if self.state.epoch == 1:  # epoch 2's last step left a NaN in the guide's parameters
            with torch.no_grad():
                next(iter(self.guide.parameters())).view(-1)[0] = float("nan")
        return bound

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"^the guide's parameter \S+ became NaN or infinite in epoch 2 \(a step's "
                                            r"gradient was not finite though its loss was\); lower --learning-rate "
                                            r"or set --clip-norm \(the last good checkpoint is kept\)\.$"):
        _fit_tutorial(run, epochs=3, figures=False)
    last = load_checkpoint(run / LAST)  # epoch 1's, which loads (a NaN checkpoint is refused)
    assert last["epoch"] == 1
