"""Training raises the ELBO; a resumed run ends with exactly the same parameters."""

import pyro
import pytest
import torch

from pyro_vae.build import build_vae
from pyro_vae.config import Config, ModelConfig
from pyro_vae.data.datasets import load_dataset
from pyro_vae.errors import CheckpointError, ConfigError, DataError, TrainingError
from pyro_vae.inference.checkpoint import BEST, LAST, load_checkpoint
from pyro_vae.inference.objectives import make_objective
from pyro_vae.inference.train import Trainer, TrainSettings, evaluate_elbo
from pyro_vae.runs import train_run


def small_config(idx_dir, **train):
    config = Config()
    config.data.dataset, config.data.data_dir, config.data.binarize = "idx", str(idx_dir), "dynamic"
    config.model.latent_dim, config.model.hidden_dims = 4, [64]
    config.train.epochs, config.train.batch_size, config.train.learning_rate = 3, 64, 3e-3
    for key, value in train.items():
        config.set(key, value)
    return config.validate()


def test_iwae_runs_keep_the_best_model_by_the_validation_iwae_bound(idx_dir, tmp_path):
    config = small_config(idx_dir, **{"train.objective": "iwae", "train.k": 3, "train.epochs": 2})
    train_run(config, tmp_path / "iwae", progress=False, log=lambda s: None)
    last, best = load_checkpoint(tmp_path / "iwae" / LAST), load_checkpoint(tmp_path / "iwae" / BEST)
    bounds = [row["valid_iwae"] for row in last["history"]]
    assert best["best_valid_elbo"] == max(bounds)
    assert all(row["valid_iwae"] >= row["valid_elbo"] - 1.0 for row in last["history"])  # tighter, up to noise


@pytest.mark.parametrize("objective", ["elbo", "analytic-kl", "iwae"])
def test_training_raises_the_validation_elbo_clearly(idx_dir, objective):
    pyro.set_rng_seed(0)
    data = load_dataset("idx", str(idx_dir), "dynamic")
    model, guide = build_vae(ModelConfig(latent_dim=4, hidden_dims=[64]), data.image_shape)
    before = evaluate_elbo(model, guide, data.valid.images, analytic_kl=True)["elbo"]
    trainer = Trainer(model, guide, make_objective(objective, k=3 if objective == "iwae" else None), data,
                      TrainSettings(epochs=4, batch_size=64, learning_rate=3e-3), progress=False, log=lambda s: None)
    trainer.fit()
    after = evaluate_elbo(model, guide, data.valid.images, analytic_kl=True)["elbo"]
    # Untrained: about -543 nats (784 pixels at log 1/2); trained on four blobs: far better.
    assert after > before + 200, (before, after)
    assert [row["epoch"] for row in trainer.state.history] == [1, 2, 3, 4]


def test_resume_equals_an_uninterrupted_run(idx_dir, tmp_path):
    full = small_config(idx_dir, **{"train.epochs": 4, "train.kl_warmup_epochs": 2})
    train_run(full, tmp_path / "full", progress=False, log=lambda s: None)

    first = small_config(idx_dir, **{"train.epochs": 2, "train.kl_warmup_epochs": 2})
    train_run(first, tmp_path / "split", progress=False, log=lambda s: None)
    again = small_config(idx_dir, **{"train.epochs": 4, "train.kl_warmup_epochs": 2})
    train_run(None, tmp_path / "split", resume=True, overrides=again, progress=False, log=lambda s: None)

    a = load_checkpoint(tmp_path / "full" / LAST)
    b = load_checkpoint(tmp_path / "split" / LAST)
    assert a["epoch"] == b["epoch"] == 4
    for part in ("model", "guide"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), name
    assert [r["valid_elbo"] for r in a["history"]] == [r["valid_elbo"] for r in b["history"]]
    metrics = (tmp_path / "split" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 5 and metrics[0].startswith("epoch,step,train_objective,valid_elbo")


def test_tensorboard_and_figures_move_no_number_of_the_run(idx_dir, tmp_path):
    """--tensorboard true drew its image grids (and --figure-every its figures) from the global
    torch stream after each epoch, which the next epoch's validation ELBO and the test ELBO
    draw from: the same seed scored other numbers (and might keep another best epoch) with
    tracking on, and a resumed run's differed from an uninterrupted one's."""
    plain = small_config(idx_dir, **{"train.epochs": 2, "train.figures": False})
    tracked = small_config(idx_dir, **{"train.epochs": 2, "train.figures": False, "train.tensorboard": True})
    a = train_run(plain, tmp_path / "plain", progress=False, log=lambda s: None)
    b = train_run(tracked, tmp_path / "tracked", progress=False, log=lambda s: None)
    history = [[row["valid_elbo"] for row in load_checkpoint(tmp_path / name / LAST)["history"]]
               for name in ("plain", "tracked")]
    assert history[0] == history[1]
    assert a["test_elbo"] == b["test_elbo"]


def test_a_run_resumed_on_another_kind_of_device_goes_on_from_streams_seeded_by_the_saved_ones(idx_dir, tmp_path):
    """A run trained on CUDA and resumed on the CPU (or back) saved generator states of the
    other kind (a CUDA Philox state is 16 bytes, a CPU one 5,056), which set_state refuses with
    a traceback. Here a CPU checkpoint's two trainer streams are replaced by 16-byte states, as a
    CUDA run's are: the resume says so in one line and goes on, the same way every time."""
    import shutil

    from pyro_vae.inference.checkpoint import save_checkpoint

    train_run(small_config(idx_dir, **{"train.epochs": 1}), tmp_path / "run", progress=False, log=lambda s: None)
    checkpoint = load_checkpoint(tmp_path / "run" / LAST)
    assert checkpoint["rng"]["data"].numel() == 5056  # a CPU Mersenne Twister's state
    for name, seed in (("data", 1), ("noise", 2)):
        checkpoint["rng"][name] = torch.tensor([seed] + [0] * 15, dtype=torch.uint8)  # Philox seed and offset
    save_checkpoint(tmp_path / "run" / LAST, checkpoint)
    shutil.copytree(tmp_path / "run", tmp_path / "again")
    ends = []
    for name in ("run", "again"):
        lines = []
        train_run(None, tmp_path / name, resume=True, overrides=small_config(idx_dir, **{"train.epochs": 2}),
                  progress=False, log=lines.append)
        assert sum("on another kind of device than cpu" in line for line in lines) == 1, lines
        ends.append(load_checkpoint(tmp_path / name / LAST))
    assert ends[0]["epoch"] == 2
    assert all(torch.equal(tensor, ends[1]["guide"][key]) for key, tensor in ends[0]["guide"].items())


def test_continue_stream_sets_a_state_of_its_own_kind_exactly():
    from pyro_vae.inference.train import continue_stream

    source = torch.Generator().manual_seed(5)
    torch.rand(3, generator=source)
    target = torch.Generator().manual_seed(9)
    assert continue_stream(target, source.get_state())
    assert torch.equal(torch.rand(4, generator=target), torch.rand(4, generator=source))


def test_best_checkpoint_tracks_the_best_validation_elbo(idx_dir, tmp_path):
    train_run(small_config(idx_dir), tmp_path / "run", progress=False, log=lambda s: None)
    last, best = load_checkpoint(tmp_path / "run" / LAST), load_checkpoint(tmp_path / "run" / BEST)
    best_row = max(last["history"], key=lambda r: r["valid_elbo"])
    assert best["epoch"] == best_row["epoch"]
    assert best["best_valid_elbo"] == best_row["valid_elbo"]


def test_resume_refuses_changed_model_and_non_runs(idx_dir, tmp_path):
    train_run(small_config(idx_dir, **{"train.epochs": 1}), tmp_path / "run", progress=False, log=lambda s: None)
    changed = small_config(idx_dir, **{"train.epochs": 2, "model.latent_dim": 9})
    with pytest.raises(ConfigError, match="cannot change model.latent_dim"):
        train_run(None, tmp_path / "run", resume=True, overrides=changed, progress=False)
    with pytest.raises(CheckpointError, match="not a pyro-vae run directory"):
        train_run(None, tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="already holds a training run"):
        train_run(small_config(idx_dir), tmp_path / "run", progress=False)


def test_bernoulli_on_grey_levels_is_refused_before_training(idx_dir, tmp_path):
    with pytest.raises(DataError, match="--binarize dynamic"):
        train_run(small_config(idx_dir, **{"data.binarize": "none"}), tmp_path / "grey", progress=False)
    assert not (tmp_path / "grey").exists()


def test_nan_loss_stops_with_a_sentence_and_keeps_the_checkpoint(idx_dir, tmp_path):
    config = small_config(idx_dir, **{"train.epochs": 1})
    train_run(config, tmp_path / "run", progress=False, log=lambda s: None)
    before = (tmp_path / "run" / LAST).read_bytes()
    data = load_dataset("idx", str(idx_dir), "dynamic")
    model, guide = build_vae(config.model, data.image_shape)
    with torch.no_grad():
        next(model.decoder.parameters()).fill_(float("nan"))
    trainer = Trainer(model, guide, make_objective("elbo"), data, TrainSettings(epochs=1),
                      run_dir=tmp_path / "run", progress=False)
    with pytest.raises(TrainingError, match="at step 1 .*learning-rate"):
        trainer.fit()
    assert (tmp_path / "run" / LAST).read_bytes() == before


def test_a_cpu_run_on_a_machine_with_a_gpu_never_touches_cuda(idx_dir, tmp_path, monkeypatch):
    """Every checkpoint of a --device cpu run read the RNG state of every CUDA device where the
    machine had one (torch.cuda.get_rng_state_all), which initialises CUDA and takes a context's
    memory on a GPU that the run never uses (on a shared server, on every rank of a CPU
    torchrun); a CPU run now saves no CUDA state, and resumes as before."""
    data = load_dataset("idx", str(idx_dir), "dynamic", train_limit=64)

    def no_cuda(*args, **kwargs):
        raise AssertionError("a CPU run touched CUDA's RNG")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", no_cuda)
    (tmp_path / "run").mkdir()
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), data.image_shape)
    trainer = Trainer(model, guide, make_objective("elbo"), data, TrainSettings(epochs=1, batch_size=32),
                      run_dir=tmp_path / "run", progress=False, log=lambda s: None)
    trainer.fit()
    assert "cuda" not in load_checkpoint(tmp_path / "run" / LAST)["rng"]
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), data.image_shape)
    resumed = Trainer(model, guide, make_objective("elbo"), data, TrainSettings(epochs=2, batch_size=32),
                      run_dir=tmp_path / "run", progress=False, log=lambda s: None)
    resumed.load(tmp_path / "run" / LAST)
    assert resumed.fit().epoch == 2


def test_kl_warmup_in_steps_reaches_beta_after_that_many_steps(idx_dir):
    data = load_dataset("idx", str(idx_dir), "dynamic", train_limit=64)
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), data.image_shape)
    trainer = Trainer(model, guide, make_objective("elbo"), data,
                      TrainSettings(epochs=1, batch_size=16, beta=0.5, kl_warmup_steps=8), progress=False)
    weights = []
    for _ in range(10):
        weights.append(trainer.kl_weight())
        trainer.state.step += 1
    assert weights == [0.5 * min(1, (s + 1) / 8) for s in range(10)]
    trainer.settings.kl_warmup_steps, trainer.settings.kl_warmup_epochs = 0, 2  # 2 epochs of 4 steps
    trainer.state.step = 3
    assert trainer.kl_weight() == 0.5 * 4 / 8


@pytest.mark.parametrize("settings, message", [
    ({"selection": "valid_loglik", "selection_k": 10}, "unknown selection 'valid_loglik'"),
    ({"patience": -1}, "patience must be at least 0"),
    ({"kl_warmup_steps": -1}, "kl_warmup_steps must be at least 0"),
    ({"batch_size": 0}, "batch_size must be between 1"),
    ({"lr_decay": 0.0}, "lr_decay must be positive"),
    ({"selection": "valid-iwae"}, "needs selection_k"),
])
def test_train_settings_refuse_what_the_loop_would_misread(settings, message):
    """TrainSettings took any value: a misspelt selection chose by the validation ELBO, a
    negative patience trained no epoch, a negative warm-up was taken for none, a learning rate
    decayed by 0 stopped training after the first epoch, batch_size 0 failed in range();
    selection 'valid-iwae' without its K failed after the first epoch's training; each is one
    sentence now, before anything trains, as the CLI's flags are."""
    with pytest.raises(ConfigError, match=message):
        TrainSettings(epochs=2, **settings)
