"""Trainer behaviour that the full mutation run (sixth session) found without a fast test:
each test kills named survivors of ``src/pyro_vae/inference/train.py`` (listed in
docs/mutation-survivors-train-datasets.md), on a tiny VAE and 48 random binary images,
against hand computations."""

from __future__ import annotations

import math
import re
import signal
import time

import pyro
import pytest
import torch
from pyro import poutine

from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.data.datasets import ImageDataset, Split
from pyro_vae.errors import CheckpointError, TrainingError, TrainingInterrupted
from pyro_vae.inference import train as train_module
from pyro_vae.inference.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from pyro_vae.inference.objectives import make_objective
from pyro_vae.inference.train import TrainSettings, Trainer, best_checkpoint, evaluate_elbo, make_adam

SHAPE = (1, 4, 4)


def _split(n: int, seed: int) -> Split:
    generator = torch.Generator().manual_seed(seed)
    return Split((torch.rand((n,) + SHAPE, generator=generator) < 0.4).float())


def _data(n_train: int = 48) -> ImageDataset:
    return ImageDataset("toy", _split(n_train, 1), _split(10, 2), _split(10, 3))


def _trainer(data=None, seed: int = 0, objective=None, run_dir=None, extra_state=None, **settings) -> Trainer:
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), SHAPE)
    settings = {"epochs": 1, "batch_size": 16, "analytic_kl": True, **settings}
    return Trainer(model, guide, objective or make_objective("analytic-kl"), data or _data(), TrainSettings(**settings),
                   run_dir=run_dir, seed=seed, progress=False, log=lambda line: None, extra_state=extra_state)


def _parameters(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.parameters]


# -- the best checkpoint ------------------------------------------------------------------

class LossRecorder:
    """The analytic-KL objective, recording each step's loss (nats per batch) in ``values``."""

    def __init__(self):
        self.inner, self.values = make_objective("analytic-kl"), []

    def differentiable_loss(self, model, guide, x, **kwargs):
        loss = self.inner.differentiable_loss(model, guide, x, **kwargs)
        self.values.append(loss.item())
        return loss


def test_the_best_checkpoint_holds_the_best_epoch_and_the_runs_extras_and_nothing_of_the_last_state():
    # best_checkpoint #33, #35, #40 (rng, rng_ranks, position copied), #42 (format lost), #66.
    history = [{"epoch": e, "step": 10 * e, "valid_elbo": -float(e)} for e in (1, 2, 3)]
    last = {"format": "fmt", "model": "last model", "guide": "last guide", "optimizer": {"lr": 1}, "epoch": 3,
            "step": 30, "best_valid_elbo": -1.5, "history": history,
            "best": {"epoch": 2, "model": "model 2", "guide": "guide 2"}, "rng": {"torch": 1}, "rng_ranks": [1, 2],
            "world_size": 2, "position": {"next_batch": 3}, "config": {"seed": 4}, "image_shape": (1, 4, 4)}
    assert best_checkpoint(last) == {
        "format": "fmt", "model": "model 2", "guide": "guide 2", "epoch": 2, "step": 20, "best_valid_elbo": -1.5,
        "history": history[:2], "config": {"seed": 4}, "image_shape": (1, 4, 4)}
    # A best epoch before every row of the history (none to read its step from): step 0.
    assert best_checkpoint({**last, "history": history[2:]})["step"] == 0


def test_the_trainers_best_checkpoint_has_the_documented_entries_only():
    # Trainer.best_checkpoint #5 ("EPOCH") and #7 ("STEP"): a stray entry in checkpoint_best.pt.
    trainer = _trainer(epochs=2, extra_state={"config": {"seed": 0}})
    trainer.fit()
    best = trainer.best_checkpoint()
    assert set(best) == {"format", "model", "guide", "epoch", "step", "best_valid_elbo", "history", "config"}
    assert best["epoch"] == trainer.state.best_epoch
    assert best["step"] == trainer.state.history[best["epoch"] - 1]["step"] == 3 * best["epoch"]


# -- evaluation, the optimizer, the latent noise ------------------------------------------------

def test_the_elbos_standard_error_over_two_examples_is_half_their_difference_and_nan_for_one():
    # evaluate_elbo #63: n > 2 gave a standard error of 0 for two examples.
    trainer = _trainer()
    images = trainer.dataset.valid.images[:2]
    pyro.set_rng_seed(5)
    both = evaluate_elbo(trainer.model, trainer.guide, images, batch_size=1)
    pyro.set_rng_seed(5)  # the same draws, one example at a time
    first, second = (evaluate_elbo(trainer.model, trainer.guide, images[i:i + 1])["elbo"] for i in (0, 1))
    assert first != second
    # sample variance (a - b)^2 / 2 over n = 2: standard error sqrt(variance / 2) = |a - b| / 2
    assert both["elbo"] == pytest.approx((first + second) / 2, rel=1e-6)
    assert both["elbo_stderr"] == pytest.approx(abs(first - second) / 2, rel=1e-5)
    # evaluate_elbo #62 (n >= 1): one example has no spread to estimate; its standard error is unknown (NaN).
    assert math.isnan(evaluate_elbo(trainer.model, trainer.guide, images[:1])["elbo_stderr"])


def test_without_the_fused_kernel_adam_takes_the_same_parameters_and_learning_rate(monkeypatch):
    # make_adam #8, #9, #10: the fallback's arguments.
    real = torch.optim.Adam

    def unfused_only(params, lr, **kwargs):
        if "fused" in kwargs:
            raise RuntimeError("fused Adam is not supported here")
        return real(params, lr=lr, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", unfused_only)
    weight = torch.tensor([1.0, -2.0], requires_grad=True)
    optimizer = make_adam([weight], 0.25)
    assert isinstance(optimizer, real) and not optimizer.defaults.get("fused")
    assert optimizer.param_groups[0]["params"] == [weight] and optimizer.param_groups[0]["lr"] == 0.25
    weight.grad = torch.tensor([3.0, -0.5])
    optimizer.step()  # Adam's first step moves every coordinate by lr against its gradient's sign
    assert torch.allclose(weight.detach(), torch.tensor([0.75, -1.75]))


def _latent_draw(trainer: Trainer, step: int) -> torch.Tensor:
    trainer.state.step = step
    x = trainer.dataset.train.images[:4]
    with trainer.global_noise(4):
        return poutine.trace(trainer.guide).get_trace(x).nodes["z"]["value"].detach()


@pytest.mark.parametrize("seed", [0, 2**62])
def test_the_latent_noise_is_new_at_every_step_and_the_same_for_the_same_step(seed):
    # global_noise #6 (% 2 * 63: two seeds alternating) and #7 (% 3**63: a large seed overflows torch's seed).
    trainer = _trainer(seed=seed)
    draws = [_latent_draw(trainer, step) for step in range(4)]
    for i in range(4):
        for j in range(i):
            assert not torch.equal(draws[i], draws[j]), (i, j)
    assert torch.equal(_latent_draw(trainer, 2), draws[2])


# -- resuming ------------------------------------------------------------------------

def test_a_run_stopped_in_its_first_epoch_resumes_with_no_best_epoch_and_ends_as_an_unstopped_one(tmp_path):
    # load #46 and #51: a checkpoint without a best epoch (stopped before the first epoch ended).
    stopped = _trainer(epochs=2, run_dir=tmp_path)
    stopped._stop_signal = signal.SIGTERM  # as the signal handler sets it: stop after the first step
    with pytest.raises(TrainingInterrupted):
        stopped.fit()
    assert load_checkpoint(tmp_path / LAST)["best"] is None
    assert stopped.state_dict()["position"] is None  # _save_interrupted #16: the position is the checkpoint's only
    resumed = _trainer(epochs=2, run_dir=tmp_path)
    resumed.load(tmp_path / LAST)
    assert (resumed.state.epoch, resumed.state.step, resumed.state.best_epoch) == (0, 1, 0)
    assert resumed.state.best_parameters is None
    resumed.fit()
    whole = _trainer(epochs=2)
    whole.fit()
    assert all(torch.equal(a, b) for a, b in zip(_parameters(resumed), _parameters(whole)))
    assert resumed.state.best_epoch == whole.state.best_epoch


@pytest.mark.parametrize("epochs", [1, 2])
def test_a_signal_after_an_epochs_last_step_stops_at_its_commit_and_resume_ends_as_an_unstopped_run(tmp_path,
                                                                                                    epochs):
    # A signal while epoch 1 is validated or drawn (here: from on_epoch): the run stops there, with no
    # step of epoch 2 and, after the last epoch, without going on to its evaluation as if unasked.
    def signal_in_epoch_1(trainer, row):
        if row["epoch"] == 1:
            trainer._stop_signal = signal.SIGINT

    stopped = _trainer(epochs=epochs, run_dir=tmp_path)
    stopped.on_epoch = signal_in_epoch_1
    with pytest.raises(TrainingInterrupted, match=f"SIGINT after epoch 1; checkpoint saved, continue with --resume"):
        stopped.fit()
    checkpoint = load_checkpoint(tmp_path / LAST)
    assert (checkpoint["epoch"], checkpoint["step"], checkpoint["position"]) == (1, 3, None)  # 3 steps an epoch
    resumed = _trainer(epochs=2, run_dir=tmp_path)
    resumed.load(tmp_path / LAST)
    resumed.fit()
    whole = _trainer(epochs=2)
    whole.fit()
    assert all(torch.equal(a, b) for a, b in zip(_parameters(resumed), _parameters(whole)))


def test_cuda_rng_states_are_saved_and_restored_and_a_cpu_checkpoint_resumes_on_a_cuda_machine(tmp_path, monkeypatch):
    # load #88, #89, #91 (a checkpoint without CUDA states read as if it had them, or one with them not) and #94.
    trainer = _trainer(run_dir=tmp_path)
    trainer.fit()
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, index: restored.append((state, index)))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    _trainer(run_dir=tmp_path).load(tmp_path / LAST)  # written on a machine without CUDA
    assert restored == []
    checkpoint = load_checkpoint(tmp_path / LAST)
    states = [torch.arange(4, dtype=torch.uint8), torch.arange(4, 8, dtype=torch.uint8)]
    checkpoint["rng"]["cuda"] = states
    save_checkpoint(tmp_path / "with_cuda.pt", checkpoint)
    _trainer(run_dir=tmp_path).load(tmp_path / "with_cuda.pt")
    assert [index for _, index in restored] == [0, 1] and all(torch.equal(a, b) for (a, _), b in zip(restored, states))
    # a machine with fewer devices than the one that saved them restores those it has (set_rng_state_all
    # raised for the device it lacks)
    restored.clear()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    _trainer(run_dir=tmp_path).load(tmp_path / "with_cuda.pt")
    assert [index for _, index in restored] == [0] and torch.equal(restored[0][0], states[0])
    # state_dict #8 and #9: the CUDA states saved where CUDA is available, by a run on CUDA (a CPU run
    # leaves CUDA alone: test_train's test_a_cpu_run_on_a_machine_with_a_gpu_never_touches_cuda)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [state.clone() for state in states])
    on_cuda = _trainer()
    on_cuda.device = torch.device("cuda")
    saved = on_cuda.state_dict()["rng"]["cuda"]
    assert len(saved) == 2 and all(torch.equal(a, b) for a, b in zip(saved, states))


# -- what an epoch reports ---------------------------------------------------------------

class _NaNAt:
    """An objective that returns the real loss, then NaN from step ``at`` (1-based) on."""

    def __init__(self, at: int):
        self.inner, self.at, self.values = make_objective("analytic-kl"), at, []

    def differentiable_loss(self, model, guide, x, **kwargs):
        loss = self.inner.differentiable_loss(model, guide, x, **kwargs)
        if len(self.values) + 1 >= self.at:
            loss = loss * float("nan")
        self.values.append(loss.item())
        return loss


@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_nan_loss_names_the_last_finite_loss_per_example(batch_size):
    # train_epoch #100 (value * rows) and #105 (value / max(2, rows)): the message's number.
    objective = _NaNAt(2)
    trainer = _trainer(objective=objective, batch_size=batch_size)
    with pytest.raises(TrainingError) as error:
        trainer.fit()
    assert f"the last finite loss was {objective.values[0] / batch_size};" in str(error.value)
    assert "at step 2 (epoch 1)" in str(error.value)


def test_kl_warm_up_in_epochs_labels_the_epochs_it_covers():
    # training_objective #4: --kl-warmup-epochs divided by the steps per epoch instead of multiplied.
    trainer = _trainer(kl_warmup_epochs=2)  # 48 images in batches of 16: 3 steps an epoch, warm-up 6 steps
    warm = "train objective (ELBO, KL warm-up to beta=1)"
    assert [trainer.training_objective({"step": 3 * e}) for e in (1, 2, 3)] == [warm, warm, "train ELBO"]


def test_an_epochs_kl_weight_is_that_of_its_last_step():
    # 48 images in batches of 16: 3 steps an epoch, warm-up over 6 steps: epoch 1's last step
    # (step 2, 0-based) has weight 3/6, epoch 2's (step 5) 6/6; not the next epoch's first step's 4/6.
    history = _trainer(epochs=3, kl_warmup_epochs=2).fit().history
    assert [row["kl_weight"] for row in history] == [0.5, 1.0, 1.0]


def test_an_epochs_seconds_and_cpu_seconds_are_the_time_it_took():
    # _fit #8: process_time() + start (the process's whole CPU time, twice over); #7: perf_counter() + start.
    trainer = _trainer()
    before, wall = time.process_time(), time.perf_counter()
    row = trainer.fit().history[0]
    assert 0 < row["cpu_seconds"] <= time.process_time() - before
    assert 0 < row["seconds"] <= time.perf_counter() - wall


class _StepClock:
    """A stand-in for the trainer's ``time`` module whose clocks move only with the steps: 5 wall
    seconds and 3 CPU seconds each (the objective calls :meth:`step`)."""

    def __init__(self):
        self.wall, self.cpu = 100.0, 50.0

    def perf_counter(self) -> float:
        return self.wall

    def process_time(self) -> float:
        return self.cpu

    def step(self) -> None:
        self.wall, self.cpu = self.wall + 5.0, self.cpu + 3.0


def test_an_epoch_stopped_and_resumed_counts_the_seconds_of_both_sessions(tmp_path, monkeypatch):
    # 48 images in batches of 16: 3 steps, one before the stop and two after the resume.
    clock = _StepClock()
    monkeypatch.setattr(train_module, "time", clock)
    objective = make_objective("analytic-kl")

    class Ticking:
        def differentiable_loss(self, *args, **kwargs):
            clock.step()
            return objective.differentiable_loss(*args, **kwargs)

    stopped = _trainer(objective=Ticking(), run_dir=tmp_path)
    stopped._stop_signal = signal.SIGTERM  # as the signal handler sets it: stop after the first step
    with pytest.raises(TrainingInterrupted):
        stopped.fit()
    clock.wall += 1000.0  # the time between the sessions is not the epoch's
    clock.cpu += 1000.0
    resumed = _trainer(objective=Ticking(), run_dir=tmp_path)
    resumed.load(tmp_path / LAST)
    row = resumed.fit().history[0]
    assert (row["seconds"], row["cpu_seconds"]) == (15.0, 9.0)


def test_an_epochs_progress_bar_is_erased_when_the_epoch_ends(capsys):
    # train_epoch #30: leave=True keeps one finished bar per epoch on the terminal.
    trainer = _trainer(epochs=2)
    trainer.progress = True
    trainer.fit()
    err = capsys.readouterr().err
    assert "epoch 2:" in err and err.endswith("\r") and "\n" not in err


def test_the_log_is_given_one_line_per_epoch_on_one_process():
    # __init__ #39: the log silenced on rank 0 too.
    lines = []
    trainer = _trainer(epochs=2)
    trainer = Trainer(trainer.model, trainer.guide, trainer.objective, trainer.dataset, trainer.settings,
                      progress=False, log=lines.append)
    trainer.fit()
    assert [line.split()[:2] for line in lines] == [["epoch", "1"], ["epoch", "2"]]
    # describe #9: nothing between the validation numbers and the time when no IWAE bound selects.
    number, error = r"-?\d+\.\d\d", r" ± \d+\.\d\d"  # each validation mean with its standard error
    assert re.fullmatch(rf"epoch   1  train ELBO +{number}{error}  valid ELBO +{number}{error} \(recon +{number}{error}, "
                        rf"KL +{number}{error}\) +\d+\.\d s( {{2}}\*best)?", lines[0]), lines[0]


def test_write_best_writes_nothing_before_a_best_epoch_or_without_a_run_directory(tmp_path):
    # write_best #2 (or for and): resuming a run stopped in its first epoch rewrites checkpoint_best.pt
    # from no best epoch (CheckpointError); a trainer without a run directory writes to None / BEST.
    stopped = _trainer(run_dir=tmp_path)
    stopped._stop_signal = signal.SIGTERM
    with pytest.raises(TrainingInterrupted):
        stopped.fit()
    resumed = _trainer(run_dir=tmp_path)
    resumed.load(tmp_path / LAST)
    resumed.write_best()  # as runs.py does on every resume
    assert not (tmp_path / BEST).exists()
    resumed.fit()
    assert load_checkpoint(tmp_path / BEST)["epoch"] == 1
    unsaved = _trainer()
    unsaved.fit()
    unsaved.write_best()
    assert unsaved.state.best_parameters is not None


def test_a_checkpoint_holds_the_entries_resume_reads(tmp_path):
    # state_dict #36 (and its like): an entry saved under another name than load and best_checkpoint read.
    trainer = _trainer(run_dir=tmp_path, extra_state={"config": {"seed": 0}})
    trainer.fit()
    checkpoint = load_checkpoint(tmp_path / LAST)
    assert set(checkpoint) == {"format", "model", "guide", "optimizer", "epoch", "step", "best_valid_elbo", "history",
                               "best", "rng", "rng_ranks", "world_size", "position", "config"}
    assert set(checkpoint["rng"]) == {"torch", "data", "noise"}  # no CUDA here
    assert (checkpoint["rng_ranks"], checkpoint["world_size"], checkpoint["position"]) == ([], 1, None)
    assert set(checkpoint["best"]) == {"epoch", "model", "guide"} and checkpoint["best"]["epoch"] == 1


def test_a_resumed_run_keeps_its_best_epochs_parameters(tmp_path):
    # load #57 (and its like): the best parameters read back under another key.
    trainer = _trainer(epochs=2, run_dir=tmp_path)
    trainer.fit()
    resumed = _trainer(epochs=2, run_dir=tmp_path)
    resumed.load(tmp_path / LAST)
    best = load_checkpoint(tmp_path / BEST)
    assert resumed.state.best_epoch == best["epoch"] == trainer.state.best_epoch
    derived = resumed.best_checkpoint()
    for part in ("model", "guide"):
        assert derived[part].keys() == best[part].keys()
        assert all(torch.equal(derived[part][k], best[part][k]) for k in best[part])


def test_a_checkpoint_resumes_only_with_its_number_of_processes_one_if_it_does_not_say(tmp_path):
    # load #67: get("world_size") without its default 1 refuses checkpoints written before it was
    # saved; load #69: the key misspelt, so a two-process checkpoint resumes on one process.
    trainer = _trainer(run_dir=tmp_path)
    trainer.fit()
    checkpoint = load_checkpoint(tmp_path / LAST)
    save_checkpoint(tmp_path / "two.pt", {**checkpoint, "world_size": 2, "rng_ranks": [checkpoint["rng"]] * 2})
    with pytest.raises(CheckpointError, match=r"was written by a run on 2 processes; resume it with the same "
                                              r"number \(this launch has 1\)\.$"):
        _trainer().load(tmp_path / "two.pt")
    del checkpoint["world_size"]
    save_checkpoint(tmp_path / "old.pt", checkpoint)
    resumed = _trainer()
    resumed.load(tmp_path / "old.pt")
    assert resumed.state.epoch == 1


# -- rank 1 of two, in one process ----------------------------------------------------------

@pytest.fixture
def one_process_group(tmp_path):
    """A one-process gloo group: the collectives of a DistributedContext(rank=1, world_size=2)
    run (summing over this process alone), so rank 1's own logic runs without torchrun."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _rank(rank: int, log=lambda line: None, **settings) -> Trainer:
    from pyro_vae.inference.distributed import DistributedContext

    trainer = _trainer(**settings)
    return Trainer(trainer.model, trainer.guide, trainer.objective, trainer.dataset, trainer.settings,
                   progress=False, log=log, distributed=DistributedContext(rank, 2))


def test_only_rank_0_logs(one_process_group):
    # __init__ #40: every rank given the log ("resuming ..." and "stopping early" once per process).
    lines = []
    _rank(1, log=lines.append).log("resuming")
    _rank(0, log=lines.append).log("resuming")
    assert lines == ["resuming"]


def test_rank_1_draws_rank_0s_batch_order_trains_every_epoch_and_evaluates_none(one_process_group):
    # begin_epoch #15 (the order from torch's RNG, seeded by rank), _fit #16 (break: rank 1 leaves
    # after one epoch), train_epoch #90 (no parameters to all-reduce).
    order_0 = _rank(0).begin_epoch(48)[0]
    rank_1 = _rank(1, epochs=3)
    assert torch.equal(rank_1.begin_epoch(48)[0], order_0)
    rank_1 = _rank(1, epochs=3)
    before = _parameters(rank_1)
    state = rank_1.fit()
    assert (state.epoch, state.step, state.history) == (3, 9, [])  # 3 epochs of 3 steps; rank 0 keeps the history
    assert not all(torch.equal(a, b) for a, b in zip(before, _parameters(rank_1)))


def test_rank_1_resumes_its_own_rng_state(tmp_path, one_process_group):
    # load #73 (rank 0's state on every rank) and #76 (the key of the ranks' states).
    checkpoint = _trainer().state_dict()
    states = []
    for seed in (5, 6):
        torch.manual_seed(seed)
        states.append({**checkpoint["rng"], "torch": torch.get_rng_state()})
    save_checkpoint(tmp_path / "two.pt", {**checkpoint, "world_size": 2, "rng_ranks": states, "rng": states[0]})
    rank_1 = _rank(1)
    rank_1.load(tmp_path / "two.pt")
    assert torch.equal(torch.get_rng_state(), states[1]["torch"])


def test_a_parameter_that_a_step_does_not_use_is_not_moved_by_that_step():
    # train_epoch #44 (zero_grad(set_to_none=False)): a zero gradient is not no gradient; Adam
    # moves a parameter with a zero gradient on its momentum, and skips one without a gradient.
    class ShiftedWhenFlagged(torch.nn.Module):
        """The guide, reading x + shift for images whose first pixel is set, x otherwise."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.shift = inner, torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return self.inner(x + self.shift if bool(x[:, 0, 0, 0].any()) else x)

    class Recording:
        def __init__(self):
            self.inner, self.seen = make_objective("analytic-kl"), []

        def differentiable_loss(self, model, guide, x, **kwargs):
            self.seen.append((bool(x[:, 0, 0, 0].any()), trainer.guide.shift.detach().item()))
            return self.inner.differentiable_loss(model, guide, x, **kwargs)

    train = _split(4, 1)
    train.images[:, 0, 0, 0] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    data = ImageDataset("flagged", train, _split(4, 2), _split(4, 3))
    base = _trainer(data=data, batch_size=1)
    objective = Recording()
    trainer = Trainer(base.model, ShiftedWhenFlagged(base.guide), objective, data,
                    TrainSettings(epochs=3, batch_size=1, learning_rate=0.1, analytic_kl=True), progress=False,
                    log=lambda line: None)
    trainer.fit()
    seen = objective.seen + [(None, trainer.guide.shift.detach().item())]
    assert [used for used, _ in objective.seen].count(True) == 6
    for (used, before), (_, after) in zip(seen, seen[1:]):
        assert (after != before) == used


def test_a_rank_without_rows_in_a_global_batch_adds_nothing_to_the_epochs_bound(one_process_group):
    # train_epoch #42 (value = 1.0): a rank whose shard of the last global batch is empty added 1 nat.
    objective = LossRecorder()
    rank_1 = _rank(1, data=_data(49), objective=objective)  # batches of 16, 16, 16 and 1: rank 1 gets 8, 8, 8, 0
    bound = rank_1.train_epoch()
    assert len(objective.values) == 3 and rank_1.state.step == 4
    # the one-process group sums over this rank alone: minus its three losses over the 49 examples
    assert bound == pytest.approx(-sum(objective.values) / 49, rel=1e-12)


def test_rank_1_trains_on_its_rows_of_the_global_batchs_binary_draw(one_process_group):
    # train_epoch #50 and #52: the dynamic draw from torch's RNG, which is seeded by rank, not the shared stream.
    class FirstBatch:
        def __init__(self):
            self.inner, self.x = make_objective("analytic-kl"), []

        def differentiable_loss(self, model, guide, x, **kwargs):
            self.x.append(x.clone())
            return self.inner.differentiable_loss(model, guide, x, **kwargs)

    grey = ImageDataset("grey", Split(torch.full((48,) + SHAPE, 0.5)), _split(10, 2), _split(10, 3),
                        binarize="dynamic")
    alone, rank_1 = FirstBatch(), FirstBatch()
    _trainer(data=grey, objective=alone).train_epoch()
    _rank(1, data=grey, objective=rank_1).train_epoch()
    assert set(alone.x[0].unique().tolist()) == {0.0, 1.0}
    for whole, part in zip(alone.x, rank_1.x):  # batches of 16: rank 1 holds rows 8..15 of each
        assert torch.equal(part, whole[8:16])


@pytest.mark.parametrize("settings,rule", [({}, "valid-elbo"), ({"selection_k": 5}, "valid-iwae"),
                                           ({"selection": "valid-loglik", "selection_k": 5}, "valid-loglik")])
def test_the_selection_rule_by_default_and_as_asked(settings, rule):
    # selection_rule #7: "VALID-ELBO" for the default.
    assert TrainSettings(epochs=1, **settings).selection_rule() == rule


def _cvae_trainer(**settings) -> Trainer:
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model, guide = build_vae(ModelConfig(model="cvae", latent_dim=2, hidden_dims=[8]), SHAPE, num_classes=3)
    splits = [Split(_split(n, seed).images, torch.arange(n) % 3) for n, seed in ((48, 1), (10, 2), (10, 3))]
    return Trainer(model, guide, make_objective("analytic-kl"), ImageDataset("labelled", *splits),
                   TrainSettings(**{"epochs": 1, "batch_size": 16, "analytic_kl": True, **settings}), progress=False,
                   log=lambda line: None)


def test_a_conditional_models_elbo_in_batches_reads_each_batchs_labels():
    # evaluate_elbo #37: every label passed with every batch.
    trainer = _cvae_trainer()
    images, labels = trainer.dataset.valid.images, trainer.dataset.valid.labels
    whole = evaluate_elbo(trainer.model, trainer.guide, images, batch_size=4, analytic_kl=True, labels=labels)
    parts = [evaluate_elbo(trainer.model, trainer.guide, images[i:i + 4], batch_size=4, analytic_kl=True,
                           labels=labels[i:i + 4]) for i in (0, 4, 8)]
    # The analytic KL involves no draw: each image's is exact given its own label, so the means agree.
    assert whole["kl"] == pytest.approx((4 * parts[0]["kl"] + 4 * parts[1]["kl"] + 2 * parts[2]["kl"]) / 10, rel=1e-6)


def test_a_conditional_model_is_selected_by_the_validation_iwae_bound_with_its_labels():
    # validate #51: the validation labels not given to the IWAE bound (refused: "the data set has none").
    row = _cvae_trainer(selection_k=3).fit().history[0]
    assert math.isfinite(row["valid_iwae"]) and row["valid_iwae"] <= 0


def test_the_checkpoint_of_a_two_rank_run_holds_every_ranks_rng_state(tmp_path, one_process_group):
    # state_dict #38 (none gathered) and #40 (None gathered).
    from pyro_vae.inference.distributed import DistributedContext

    class TwoRanks(DistributedContext):
        def gather(self, obj):  # what all_gather_object returns on two ranks: rank 1's state after rank 0's
            return [obj, {"rank": 1}]

    trainer = _trainer()
    trainer = Trainer(trainer.model, trainer.guide, trainer.objective, trainer.dataset, trainer.settings,
                      progress=False, log=lambda line: None, distributed=TwoRanks(0, 2))
    state = trainer.state_dict()
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2 and state["rng_ranks"][1] == {"rank": 1}
    assert torch.equal(state["rng_ranks"][0]["torch"], state["rng"]["torch"])
    # _fit #15 (run_dir * LAST): rank 1 takes part in every epoch's save, and writes nothing.
    run = tmp_path / "run"
    run.mkdir()
    rank_1 = Trainer(trainer.model, trainer.guide, trainer.objective, trainer.dataset, trainer.settings,
                     run_dir=run, progress=False, log=lambda line: None, distributed=TwoRanks(1, 2))
    assert rank_1.fit().epoch == 1 and list(run.iterdir()) == []


@pytest.mark.parametrize("beta", [2.0, 0.5])
def test_the_training_loss_weighs_the_kl_by_beta(beta):
    # train_epoch #57 (`beta != 2.0`): a KL weight of 2 left unapplied. With the same parameters and
    # draws, the first step's loss is -reconstruction + beta * KL: linear in beta.
    losses = {}
    for weight in (1.0, beta, 2 * beta - 1.0):
        objective = LossRecorder()
        _trainer(objective=objective, beta=weight).train_epoch()
        losses[weight] = objective.values[0]
    kl = (losses[beta] - losses[1.0]) / (beta - 1.0)  # the batch's summed KL
    assert kl > 0
    assert losses[2 * beta - 1.0] == pytest.approx(losses[1.0] + 2 * (beta - 1.0) * kl, rel=1e-5)


def test_the_best_checkpoint_before_any_epoch_is_refused_in_a_sentence():
    # Trainer.best_checkpoint #14: {**None} (a TypeError) instead of the CheckpointError.
    with pytest.raises(CheckpointError, match=r"holds no best epoch yet; train at least one epoch\.$"):
        _trainer().best_checkpoint()


def test_validation_with_the_analytic_kl_reports_the_closed_form_kl():
    # validate #7: analytic_kl not passed on (None: the KL sampled instead).
    trainer = _trainer(analytic_kl=True)
    metrics, _ = trainer.validate()
    exact = evaluate_elbo(trainer.model, trainer.guide, trainer.dataset.valid.images, analytic_kl=True)["kl"]
    assert metrics["valid_kl"] == pytest.approx(exact, rel=1e-9)
