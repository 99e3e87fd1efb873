"""The trainer's wiring, checked through what it writes: which split the validation
numbers come from, which epoch the best checkpoint holds, the learning rate of every step
and the gradient norm the optimizer sees.

Data: 8 x 8 binary images of one fixed pattern. The three splits differ on purpose, so a
number computed on the wrong split is far from the right one: training images flip 5% of
the pattern's pixels, validation images 30%, test images are the pattern inverted. A few
epochs of a tiny MLP VAE take well under a second.
"""

from __future__ import annotations

import math
import os
import signal

import pyro
from pyro import poutine
import pytest
import torch

from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.data.datasets import ImageDataset, Split
from pyro_vae.errors import TrainingError, TrainingInterrupted
from pyro_vae.inference.checkpoint import BEST, LAST, load_checkpoint
from pyro_vae.inference.loglik import importance_log_likelihood
from pyro_vae.inference.objectives import make_objective
from pyro_vae.inference.train import Trainer, TrainSettings, evaluate_elbo

SHAPE = (1, 8, 8)
MODEL = ModelConfig(latent_dim=2, hidden_dims=[16])
BATCH = 32


def _pattern() -> torch.Tensor:
    return (torch.arange(64).reshape(SHAPE) % 3 == 0).float()


def _noisy(n: int, flip: float, seed: int, inverted: bool = False) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    base = 1 - _pattern() if inverted else _pattern()
    flips = torch.rand((n,) + SHAPE, generator=generator) < flip
    return torch.where(flips, 1 - base, base).expand(n, *SHAPE).clone()


def _dataset() -> ImageDataset:
    return ImageDataset("splits-differ", Split(_noisy(256, 0.05, 1)), Split(_noisy(200, 0.3, 2)),
                        Split(_noisy(200, 0.05, 3, inverted=True)))


def _trainer(data, run_dir, epochs: int, extra_state=None, log=lambda line: None, **settings) -> Trainer:
    pyro.set_rng_seed(0)
    model, guide = build_vae(MODEL, SHAPE)
    settings = TrainSettings(epochs=epochs, batch_size=BATCH, learning_rate=settings.pop("learning_rate", 1e-2),
                             analytic_kl=True, **settings)
    return Trainer(model, guide, make_objective("analytic-kl"), data, settings, run_dir=run_dir,
                   progress=False, log=log, extra_state=extra_state)


def _restored(checkpoint: dict):
    model, guide = build_vae(MODEL, SHAPE)
    model.load_state_dict(checkpoint["model"]), guide.load_state_dict(checkpoint["guide"])
    return model.eval(), guide.eval()


def _elbo(checkpoint: dict, images: torch.Tensor) -> float:
    """The checkpoint's ELBO on ``images`` as validation computes it, averaged over 5 draws."""
    model, guide = _restored(checkpoint)
    return sum(evaluate_elbo(model, guide, images, analytic_kl=True)["elbo"] for _ in range(5)) / 5


def _snapshots(trainer: Trainer, run_dir) -> list[dict]:
    """``checkpoint_last.pt`` as it was at the end of every epoch."""
    seen = []
    trainer.on_epoch = lambda trainer, row: seen.append(load_checkpoint(run_dir / LAST))
    return seen


def test_a_trainer_seeds_torchs_global_rng_as_its_docstring_says_and_fit_keeps_the_callers():
    """The Trainer's docstring and README say it resets torch's global stream to its seed (fit does not)."""
    from pyro_vae import fit

    data = _dataset()
    model, guide = build_vae(MODEL, SHAPE)
    settings = TrainSettings(epochs=1, batch_size=BATCH)
    after = []
    for callers_seed in (123, 456):  # the stream after construction is the Trainer's, whatever the caller's was
        torch.manual_seed(callers_seed)
        Trainer(model, guide, make_objective("elbo"), data, settings, seed=7, progress=False, log=lambda line: None)
        after.append(torch.rand(3))
    assert torch.equal(after[0], after[1])
    torch.manual_seed(123)
    fit(model, guide, data, epochs=1, batch_size=BATCH, seed=7, log=lambda line: None)
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(123)))


def test_each_epochs_validation_numbers_are_those_of_its_checkpoint_on_the_validation_split(tmp_path):
    data = _dataset()
    trainer = _trainer(data, tmp_path, epochs=3)
    snapshots = _snapshots(trainer, tmp_path)
    trainer.fit()
    history = load_checkpoint(tmp_path / LAST)["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3] == [s["epoch"] for s in snapshots]
    # The splits are far apart (more than 10 nats) under the least trained model, so the
    # check below can tell them apart ...
    train, valid, test = (_elbo(snapshots[0], split.images) for split in (data.train, data.valid, data.test))
    assert train - valid > 10 and valid - test > 10, (train, valid, test)
    for row, checkpoint in zip(history, snapshots):
        # ... and the row is the validation split's, to Monte Carlo error: one draw's mean
        # over these 200 images has a standard deviation of about 0.6 nats here.
        assert row["valid_elbo"] == pytest.approx(_elbo(checkpoint, data.valid.images), abs=3.0), row
        assert row["valid_reconstruction"] - row["valid_kl"] == pytest.approx(row["valid_elbo"], abs=1e-4)


def test_best_checkpoint_is_the_epoch_with_the_best_criterion_when_it_goes_down_and_up(tmp_path):
    """The validation set is swapped after each epoch so the criterion goes down, up, down:
    the best epoch (3) is neither the first nor the last."""
    data = _dataset()
    medium, hard, easy = _noisy(200, 0.3, 2), _noisy(200, 0.05, 3, inverted=True), _noisy(200, 0.05, 4)
    schedule = {1: hard, 2: easy, 3: hard}  # what validates the epoch after this one
    trainer = _trainer(data, tmp_path, epochs=4)
    data.valid.images.copy_(medium)
    snapshots = []

    def swap(trainer, row):
        snapshots.append(load_checkpoint(tmp_path / LAST))
        if row["epoch"] in schedule:
            data.valid.images.copy_(schedule[row["epoch"]])

    trainer.on_epoch = swap
    trainer.fit()
    history = load_checkpoint(tmp_path / LAST)["history"]
    criterion = [row["valid_elbo"] for row in history]
    assert criterion[1] < criterion[0] < criterion[2] and criterion[3] < criterion[2], criterion
    best = load_checkpoint(tmp_path / BEST)
    assert best["epoch"] == 3 and best["best_valid_elbo"] == criterion[2]
    assert best["step"] == snapshots[2]["step"] == history[2]["step"]  # epoch 3's last step, not 0
    for part in ("model", "guide"):
        for name, tensor in snapshots[2][part].items():
            assert torch.equal(best[part][name], tensor), name
    # Epoch 4's parameters differ (the test is not comparing equal checkpoints).
    assert not all(torch.equal(best["model"][n], t) for n, t in snapshots[3]["model"].items())


class _OptimizerSpy:
    """Records, at every optimizer step, the learning rate and the gradient's global norm."""

    def __init__(self, trainer: Trainer):
        self.trainer, self.rates, self.norms = trainer, [], []
        self._step = trainer.optimizer.step
        trainer.optimizer.step = self.step

    def step(self, *args, **kwargs):
        grads = [p.grad.reshape(-1) for p in self.trainer.parameters if p.grad is not None]
        self.norms.append(torch.cat(grads).norm().item())
        self.rates.append([group["lr"] for group in self.trainer.optimizer.param_groups])
        return self._step(*args, **kwargs)


def test_every_step_of_epoch_e_uses_learning_rate_lr_times_decay_to_the_e(tmp_path):
    data = _dataset()
    trainer = _trainer(data, tmp_path, epochs=3, learning_rate=0.02, lr_decay=0.5)
    spy = _OptimizerSpy(trainer)
    checkpoints = _snapshots(trainer, tmp_path)
    trainer.fit()
    steps = math.ceil(len(data.train) / BATCH)
    assert len(spy.rates) == 3 * steps
    for i, rates in enumerate(spy.rates):
        assert rates == [pytest.approx(0.02 * 0.5 ** (i // steps), rel=1e-12)], (i, rates)
    # The saved optimizer state carries the rate of the epoch it ends.
    saved = [c["optimizer"]["param_groups"][0]["lr"] for c in checkpoints]
    assert saved == pytest.approx([0.02, 0.01, 0.005], rel=1e-12)


def test_a_resumed_run_continues_the_learning_rate_schedule(tmp_path):
    data = _dataset()
    _trainer(data, tmp_path, epochs=2, learning_rate=0.02, lr_decay=0.5).fit()
    resumed = _trainer(data, tmp_path, epochs=3, learning_rate=0.02, lr_decay=0.5)
    resumed.load(tmp_path / LAST)
    spy = _OptimizerSpy(resumed)
    resumed.fit()
    assert spy.rates and all(rates == [pytest.approx(0.005, rel=1e-12)] for rates in spy.rates)


@pytest.mark.parametrize("clip_norm", [0.5, 3.0])
def test_the_optimizer_never_sees_a_gradient_longer_than_clip_norm(tmp_path, clip_norm):
    data = _dataset()
    unclipped = _OptimizerSpy(_trainer(data, None, epochs=1))
    unclipped.trainer.fit()
    # Without clipping the gradients of these summed losses are far longer than clip_norm.
    assert min(unclipped.norms) > 2 * clip_norm, unclipped.norms
    trainer = _trainer(data, None, epochs=2, clip_norm=clip_norm)
    spy = _OptimizerSpy(trainer)
    trainer.fit()
    assert len(spy.norms) == 2 * math.ceil(len(data.train) / BATCH)
    # Rescaled to clip_norm exactly (not merely below it, not to zero).
    assert spy.norms == pytest.approx([clip_norm] * len(spy.norms), rel=1e-5)


class _ObjectiveSpy:
    """The real objective, recording each step's loss and the weight its latent site carries."""

    def __init__(self, objective):
        self.objective, self.losses, self.weights, self.batch_sizes = objective, [], [], []

    def differentiable_loss(self, model, guide, x, **kwargs):
        site = poutine.trace(guide).get_trace(x, **kwargs).nodes["z"]
        self.weights.append(float(site["scale"]))
        self.batch_sizes.append(len(x))
        loss = self.objective.differentiable_loss(model, guide, x, **kwargs)
        self.losses.append(loss.item())
        return loss


@pytest.mark.parametrize("warmup", [{"kl_warmup_epochs": 1}, {"kl_warmup_steps": 5, "kl_warmup_epochs": 1}])
def test_each_step_weights_the_kl_by_the_warmup_and_the_epoch_reports_its_mean_bound(tmp_path, warmup):
    data = _dataset()
    data.train.images = data.train.images[:250]  # the last batch is short (250 = 7 x 32 + 26)
    trainer = _trainer(data, None, epochs=2, beta=0.5, **warmup)
    spy = trainer.objective = _ObjectiveSpy(trainer.objective)
    trainer.fit()
    ramp = warmup.get("kl_warmup_steps") or 8  # kl_warmup_steps wins over kl_warmup_epochs
    assert spy.weights == pytest.approx([0.5 * min(1.0, (s + 1) / ramp) for s in range(16)])
    assert spy.batch_sizes == ([32] * 7 + [26]) * 2
    history = trainer.state.history
    assert [row["step"] for row in history] == [8, 16]
    # The epoch's training bound is minus the summed step losses per training example.
    for epoch, row in enumerate(history):
        assert row["train_objective"] == pytest.approx(-sum(spy.losses[8 * epoch:8 * epoch + 8]) / 250, rel=1e-6)


@pytest.mark.parametrize("batch_size", [1000, 3])
@pytest.mark.parametrize("analytic_kl", [True, False])
def test_evaluate_elbo_is_the_mean_over_examples_of_the_closed_form_bound(batch_size, analytic_kl):
    """With q(z|x)'s scale at a 1e-6 floor, z = loc(x) to within 1e-6, so the ELBO is
    log p(x | z = loc) - KL(N(loc, 1e-6) || N(0, I)) by hand, whatever the batching."""
    pyro.set_rng_seed(0)
    config = ModelConfig(latent_dim=2, hidden_dims=[16], min_scale=1e-6)
    model, guide = build_vae(config, SHAPE)
    with torch.no_grad():
        guide.encoder.raw_scale.weight.zero_(), guide.encoder.raw_scale.bias.fill_(-100.0)
    x = _noisy(10, 0.2, 5)
    with torch.no_grad():
        loc, scale = guide.encoder(x)
        recon = torch.distributions.Bernoulli(logits=model.decoder(loc)).log_prob(x).sum((1, 2, 3))
        kl = torch.distributions.kl_divergence(torch.distributions.Normal(loc, scale),
                                               torch.distributions.Normal(0.0, 1.0)).sum(-1)
    got = evaluate_elbo(model, guide, x, batch_size=batch_size, analytic_kl=analytic_kl)
    assert got["reconstruction"] == pytest.approx(recon.mean().item(), abs=1e-3)
    # The Monte Carlo KL, log q - log p at the draw, is exact only in expectation: it adds
    # sum_d (1 - eps_d^2) / 2 per example, a mean over 10 examples with standard error 0.32.
    assert got["kl"] == pytest.approx(kl.mean().item(), abs=1e-3 if analytic_kl else 1.5)
    assert got["elbo"] == pytest.approx(got["reconstruction"] - got["kl"], abs=1e-4)


def test_a_signal_mid_epoch_saves_a_checkpoint_that_resumes_to_the_uninterrupted_run(tmp_path):
    """SIGINT at step 11 (epoch 2) in this process: the step finishes, a checkpoint is written
    and TrainingInterrupted raised; a new trainer loading it ends where one never stopped."""
    data = _dataset()
    whole = _trainer(data, tmp_path / "whole", epochs=3)
    (tmp_path / "whole").mkdir()
    whole.fit()

    (tmp_path / "split").mkdir()
    stopped = _trainer(data, tmp_path / "split", epochs=3)
    stopped.objective = _SignalAt(stopped.objective, call=11)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as stop:
        stopped.fit()
    assert stop.value.signum == signal.SIGINT and stopped.objective.calls == 11
    assert "after step 11 (epoch 2)" in str(stop.value), str(stop.value)
    saved = load_checkpoint(tmp_path / "split" / LAST)
    assert (saved["epoch"], saved["step"], saved["position"]["next_batch"]) == (1, 11, 3)
    assert signal.getsignal(signal.SIGINT) is handler  # the caller's handler is back

    resumed = _trainer(data, tmp_path / "split", epochs=3)
    resumed.load(tmp_path / "split" / LAST)
    # Loading keeps the best epoch's state: saved again at once, it still holds epoch 1.
    resumed.save(tmp_path / "again.pt")
    again = load_checkpoint(tmp_path / "again.pt")
    assert again["best"]["epoch"] == saved["best"]["epoch"] == 1
    assert all(torch.equal(again["best"]["model"][n], t) for n, t in saved["best"]["model"].items())
    resumed.fit()
    a, b = load_checkpoint(tmp_path / "whole" / LAST), load_checkpoint(tmp_path / "split" / LAST)
    assert a["step"] == b["step"] == 24 and b["position"] is None
    for part in ("model", "guide", "optimizer"):
        assert torch.equal(torch.cat([t.flatten() for t in _tensors(a[part])]),
                           torch.cat([t.flatten() for t in _tensors(b[part])])), part
    assert [r["valid_elbo"] for r in a["history"]] == [r["valid_elbo"] for r in b["history"]]
    assert [r["train_objective"] for r in a["history"]] == [r["train_objective"] for r in b["history"]]


class _SignalAt:
    """The real objective; sends this process SIGINT during its ``call``-th step."""

    def __init__(self, objective, call: int):
        self.objective, self.call, self.calls = objective, call, 0

    def differentiable_loss(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.call:
            os.kill(os.getpid(), signal.SIGINT)
        return self.objective.differentiable_loss(*args, **kwargs)


def _tensors(tree) -> list[torch.Tensor]:
    if torch.is_tensor(tree):
        return [tree.float()]
    if isinstance(tree, dict):
        return [t for key in sorted(tree, key=str) for t in _tensors(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _tensors(item)]
    return [torch.tensor(float(tree))] if isinstance(tree, (int, float)) else []


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    data = _dataset()
    trainer = _trainer(data, tmp_path, epochs=1)
    trainer.fit()
    before = (tmp_path / LAST).read_bytes()
    with torch.no_grad():
        next(trainer.model.decoder.parameters()).fill_(float("nan"))
    trainer.settings.epochs = 2
    with pytest.raises(TrainingError, match="loss became nan at step 9 .epoch 2.; the last finite loss was None"):
        trainer.fit()
    assert (tmp_path / LAST).read_bytes() == before


def test_the_log_names_each_epochs_numbers_and_marks_the_improvements(tmp_path):
    data = _dataset()
    lines = []
    trainer = _trainer(data, None, epochs=2, log=lines.append)  # the log the caller gives is used
    data.valid.images.copy_(_noisy(200, 0.05, 4))
    trainer.on_epoch = lambda trainer, row: data.valid.images.copy_(_noisy(200, 0.05, 3, inverted=True))
    trainer.fit()
    assert len(lines) == 2
    for line, row, best in zip(lines, trainer.state.history, (True, False)):
        assert line.startswith(f"epoch {row['epoch']:>3}  train ")
        assert f"valid ELBO {row['valid_elbo']:9.2f} ± {row['valid_elbo_stderr']:.2f}" in line
        assert f"{row['train_objective']:9.2f}" in line
        assert (f"recon {row['valid_reconstruction']:9.2f} ± {row['valid_reconstruction_stderr']:.2f}, "
                f"KL {row['valid_kl']:7.2f} ± {row['valid_kl_stderr']:.2f})") in line
        assert line.endswith("  *best") == best


def test_selection_by_the_validation_iwae_bound(tmp_path):
    """With ``selection_k`` each row carries the validation IWAE bound (at least the ELBO, up to
    Monte Carlo error) and the best checkpoint is the epoch with the highest one."""
    data = _dataset()
    trainer = _trainer(data, tmp_path, epochs=2, selection_k=8)
    checkpoints = _snapshots(trainer, tmp_path)
    trainer.fit()
    history = trainer.state.history
    for row, checkpoint in zip(history, checkpoints):
        model, guide = _restored(checkpoint)
        estimate = importance_log_likelihood(model, guide, data.valid.images, k=8)
        assert row["valid_iwae"] == pytest.approx(estimate.mean, abs=3.0)
        assert row["valid_iwae"] > row["valid_elbo"] - 1.0
    best = load_checkpoint(tmp_path / BEST)
    assert best["best_valid_elbo"] == max(row["valid_iwae"] for row in history)
    assert best["epoch"] == max(history, key=lambda row: row["valid_iwae"])["epoch"]


def test_progress_bars_only_when_asked(tmp_path, capsys):
    data = _dataset()
    for progress, shown in ((False, False), (True, True)):
        trainer = _trainer(data, None, epochs=1)
        trainer.progress = progress
        trainer.fit()
        err = capsys.readouterr().err
        # "epoch 1: ... 8/8 [00:00<00:00, 41.2batch/s]" (or s/batch when slow)
        assert ("epoch 1" in err) == shown and ("batch/s" in err or "s/batch" in err) == shown


def test_checkpoints_carry_the_callers_extra_state_beside_the_training_state(tmp_path):
    data = _dataset()
    _trainer(data, tmp_path, epochs=1, extra_state={"config": {"seed": 4}, "dataset": "splits-differ"}).fit()
    for name in (LAST, BEST):
        checkpoint = load_checkpoint(tmp_path / name)
        assert checkpoint["config"] == {"seed": 4} and checkpoint["dataset"] == "splits-differ"
        assert checkpoint["epoch"] == 1
    # The last checkpoint is the run's record (the best one is derived from it): it alone
    # carries the launch's process count and the position within an epoch.
    last = load_checkpoint(tmp_path / LAST)
    assert last["world_size"] == 1 and last["position"] is None


def test_dynamic_binarization_draws_fresh_binary_pixels_every_step():
    grey = torch.full((64, *SHAPE), 0.3)
    data = ImageDataset("grey", Split(grey), Split(_noisy(20, 0.1, 2)), Split(_noisy(20, 0.1, 3)), "dynamic")
    trainer = _trainer(data, None, epochs=2)
    seen = []
    spy = trainer.objective = _ObjectiveSpy(trainer.objective)
    real = spy.differentiable_loss
    spy.differentiable_loss = lambda model, guide, x, **kw: (seen.append(x.clone()), real(model, guide, x, **kw))[1]
    trainer.fit()
    pixels = torch.cat(seen)
    assert set(pixels.unique().tolist()) == {0.0, 1.0}
    assert abs(pixels.mean().item() - 0.3) < 3 * math.sqrt(0.21 / pixels.numel())
    assert not torch.equal(seen[0], seen[2])  # the same images, drawn again in epoch 2
