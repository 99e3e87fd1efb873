"""The training loop: stochastic gradient ascent on a Pyro ELBO, epoch by epoch.

Each step draws a batch from tensors already on the device, computes the objective's
``differentiable_loss`` (minus the bound summed over the batch, in nats) on the model
and guide, and takes one ``torch.optim.Adam`` step over all their parameters. (Pyro's
``SVI`` with ``pyro.optim.Adam`` does the same with one optimizer per parameter; a single
fused torch optimizer is as correct, faster, and its state is one ``state_dict``.)

After every epoch the validation ELBO and its parts are computed, a row is appended to
the history, and the epoch is committed: ``checkpoint_last.pt`` is written atomically and
is the one record of the run. It holds the parameters, the optimizer, every RNG state the
loop draws from, the whole history (the rows of ``metrics.csv``) and the best-so-far
state (the best epoch, its criterion and its parameters). Everything else is derived from
it afterwards: ``checkpoint_best.pt`` (:func:`best_checkpoint`) and, in
:mod:`pyro_vae.runs`, ``metrics.csv`` and ``summary.json``. A process killed at any
instant therefore leaves either the previous commit or this one, never a mixture, and
``--resume`` rewrites the derived files from the commit; a resumed run ends with the same
parameters, best checkpoint and metrics as one that was never stopped (on CPU, same seed).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from pyro import poutine

from pyro_vae.data.datasets import ImageDataset, as_tensor, binarize_batch
from pyro_vae.errors import CheckpointError, ConfigError, DataError, TrainingError, TrainingInterrupted
from pyro_vae.inference.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from pyro_vae.inference.distributed import DistributedContext, GlobalBatchNoise
from pyro_vae.inference.programs import evaluation_mode, in_eval_mode, trainable_programs
from pyro_vae.inference.randomness import random_state_kept
from pyro_vae.inference.kinds import short_quantity
from pyro_vae.inference.objectives import ELBOTerms, elbo_terms, latent_sites, linear_warmup, scale_sites
from pyro_vae.inference.weights import check_one_value_per_example


CHECKPOINT_FORMAT = "pyro-vae-checkpoint-1"

#: Names a history row's column had in runs written by earlier versions, and its name now:
#: ``train_elbo`` held the training objective's value whatever it was (the IWAE bound, a
#: beta-weighted ELBO), so it is called what it is, ``train_objective``.
RENAMED_COLUMNS = {"train_elbo": "train_objective"}


def current_row(row: dict) -> dict:
    """A history row (of a checkpoint or ``metrics.csv``) with today's column names
    (:data:`RENAMED_COLUMNS`), each column kept in its place."""
    return {RENAMED_COLUMNS.get(key, key): value for key, value in row.items()}


def best_checkpoint(last: dict) -> dict:
    """``checkpoint_best.pt`` derived from a last checkpoint (or a state of that form): the
    best epoch's parameters, its number, step and criterion, the history up to it, and the
    run's extra entries (config, image shape). A checkpoint written before last checkpoints
    carried the best state has none to derive: :class:`CheckpointError`."""
    best = last.get("best")
    if not best:
        raise CheckpointError("this run's last checkpoint holds no best epoch yet; train at least one epoch.")
    history = [current_row(row) for row in last["history"] if row["epoch"] <= best["epoch"]]
    own = {"format", "model", "guide", "optimizer", "epoch", "step", "best_valid_elbo", "history", "best", "rng",
           "rng_ranks", "world_size", "position"}
    return {**{k: v for k, v in last.items() if k not in own},
            "format": last["format"], "model": best["model"], "guide": best["guide"], "epoch": best["epoch"],
            "step": history[-1]["step"] if history else 0, "best_valid_elbo": last["best_valid_elbo"],
            "history": history}


@dataclass
class TrainSettings:
    epochs: int
    batch_size: int = 128
    learning_rate: float = 1e-3
    lr_decay: float = 1.0
    clip_norm: float = 0.0
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    kl_warmup_steps: int = 0
    analytic_kl: bool = False
    eval_batch_size: int = 1000
    #: If > 0, also compute the validation importance-weighted bound with this K and keep
    #: the best model by it (right for IWAE training, whose ELBO is not its objective).
    selection_k: int = 0
    #: The bound the objective estimates, for the log line ("ELBO", "IWAE bound K=5").
    objective_label: str = "ELBO"
    #: What the ELBO bounds, for the log line: log p(x), or a conditional (the CVAE's log p(x | y)).
    quantity: str = "log p(x)"
    #: Stop once the selection criterion has not improved for this many epochs (0 = never).
    patience: int = 0
    #: What chooses the best model: "valid-elbo"; "valid-iwae" (the bound with K =
    #: ``selection_k`` on every validation image); "valid-loglik" (log p(x) by importance
    #: sampling with K = ``selection_k`` on ``selection_examples`` validation images drawn
    #: once with ``selection_seed``, and the same importance draws every epoch, so epochs
    #: differ by their parameters, not by noise). Empty: "valid-iwae" if ``selection_k``
    #: else "valid-elbo".
    selection: str = ""
    selection_examples: int = 0
    selection_seed: int = 0

    def __post_init__(self) -> None:
        """Refuse, in one sentence, a setting the loop would misread rather than use: a
        misspelt ``selection`` chose by the validation ELBO, a negative ``patience`` trained
        no epoch, a zero batch failed inside ``range``. (Both warm-ups given: the steps' rules.)"""
        from pyro_vae.config import SELECTIONS, _at_least, _between, _positive

        _between("epochs", self.epochs, 0, 10**6)
        _between("batch_size", self.batch_size, 1, 10**6)
        _positive("learning_rate", self.learning_rate)
        _positive("lr_decay", self.lr_decay)
        for name in ("clip_norm", "beta", "kl_warmup_epochs", "kl_warmup_steps", "patience", "selection_k",
                     "selection_examples"):
            _at_least(name, getattr(self, name), 0)
        if self.selection not in ("", *SELECTIONS[1:]):
            raise ConfigError(f"unknown selection '{self.selection}' (choose from {', '.join(SELECTIONS[1:])}, or "
                              "leave it empty).")
        if self.selection_rule() in ("valid-iwae", "valid-loglik") and self.selection_k < 1:
            raise ConfigError(f"selection '{self.selection_rule()}' needs selection_k, its number of importance "
                              "samples, of at least 1.")

    def selection_rule(self) -> str:
        return self.selection or ("valid-iwae" if self.selection_k else "valid-elbo")

    def describe_selection(self) -> str:
        """What chose the best epoch, in words (for summary.json)."""
        rule = self.selection_rule()
        if rule == "valid-iwae":
            return f"best validation IWAE bound (K={self.selection_k})"
        if rule == "valid-loglik":
            images = f"{self.selection_examples} fixed random" if self.selection_examples else "all"
            return (f"best validation log-likelihood by importance sampling (K={self.selection_k}, "
                    f"{images} validation images, seed {self.selection_seed})")
        return "best validation ELBO"

    def describe_objective(self) -> str:
        """What the history's ``train_objective`` holds (the epoch's mean of the objective the
        steps ascended, nats per example), in words: the bound itself ("ELBO", "IWAE bound
        K=5", "ELBO of log p(x | y)") only when the KL weight is 1 throughout; otherwise the
        bound with its KL weight."""
        label = self.objective_label + bound_of(self.quantity)
        warmup = (f"{self.kl_warmup_steps} steps" if self.kl_warmup_steps else  # a 1-step warm-up is refused
                  _count(self.kl_warmup_epochs, "epoch") if self.kl_warmup_epochs else "")
        if warmup:
            return f"{label} with the KL weight warmed up to beta={self.beta:g} over {warmup}"
        if self.beta != 1:
            return f"{label} with the KL weight beta={self.beta:g}"
        return label


@dataclass
class EpochTotal:
    r"""An epoch's training loss summed over its batches (nats), with what its standard error
    needs. Batch b of n_b examples gave the sum ``value_b``; its mean m_b = value_b / n_b is a
    draw of a mean of n_b examples, of variance sigma^2 / n_b, so with B batches and N examples

    .. math:: s^2 = \frac{\sum_b n_b m_b^2 - N M^2}{B - 1}, \quad M = \frac{\sum_b \text{value}_b}{N},
              \quad \text{s.e.}(M) = \sqrt{s^2 / N}.

    The parameters move during the epoch, so the drift of the loss counts as spread too: the
    standard error of the epoch's mean as it was taken, not of one model's objective."""

    total: float = 0.0
    squares: float = 0.0  # sum over batches of value_b^2 / n_b
    batches: int = 0

    def add(self, value: float, n: int) -> None:
        """Batch of ``n`` examples whose losses sum to ``value`` (a rank's empty shard adds nothing)."""
        if n:
            self.total += value
            self.squares += value * value / n
            self.batches += 1

    def stderr(self, n: int) -> float:
        """The standard error of the epoch's mean loss over its ``n`` examples (NaN with one
        batch, or where a checkpoint of an older version stopped the epoch without the sums)."""
        if self.batches < 2:
            return math.nan
        variance = (self.squares - self.total * self.total / n) / (self.batches - 1)
        return math.sqrt(max(variance, 0.0) / n)


class EpochClock:
    """An epoch's wall-clock and CPU seconds (``time.perf_counter``, ``time.process_time``) so
    far, over every session it ran in: a run stopped mid-epoch saves them with its position
    (:meth:`Trainer._save_interrupted`) and the resumed session adds its own, so the epoch's
    ``seconds`` is the time it took, not the time since the resume."""

    def __init__(self, seconds_before: float = 0.0, cpu_seconds_before: float = 0.0):
        self.seconds_before, self.cpu_seconds_before = seconds_before, cpu_seconds_before
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start

    def cpu_seconds(self) -> float:
        """This process's CPU seconds for the epoch (and the earlier sessions')."""
        return self.cpu_seconds_before + time.process_time() - self.cpu_start


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0
    best_valid_elbo: float = -math.inf  # the selection criterion: valid ELBO, or IWAE bound
    #: One row per completed epoch: the single source of the metrics (metrics.csv is a copy).
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0  # the epoch whose parameters are best_parameters (0: none yet)
    #: ``{"model": state_dict, "guide": state_dict}`` of the best epoch, copies (None before one).
    best_parameters: dict | None = None


def epochs_since_best(criteria: list[float]) -> int:
    """Epochs since the best value of ``criteria`` (one per epoch, higher is better; the
    first of equal values counts, as the trainer keeps a model only on a strict improvement).
    Read from the history, so a resumed run counts on where it stopped."""
    if not criteria:
        return 0
    best = max(range(len(criteria)), key=lambda i: (criteria[i], -i))
    return len(criteria) - 1 - best


def patience_stop(criteria: list[float], patience: int) -> int | None:
    """The number of epochs after which a run with ``patience`` (> 0) stops early, given its
    selection ``criteria`` (one per epoch trained): the first count whose epochs since the best
    reach ``patience``, as :meth:`Trainer.stopped_early` checks before each epoch; None where it
    would go on past them all (or ``patience`` is 0, which never stops)."""
    if patience:
        for done in range(1, len(criteria) + 1):
            if epochs_since_best(criteria[:done]) >= patience:
                return done
    return None


def cut_back(checkpoint: dict, epochs: int, option: str, run_dir, batch_size: int) -> str | None:
    """The sentence refusing to resume the run in ``run_dir`` (last checkpoint ``checkpoint``)
    with ``epochs`` in all where that would cut it back, or None: fewer epochs than it has
    trained, or no more than it had finished where it stopped inside the next one (its last
    checkpoint then holds that epoch's first steps, which the finished run's record would not
    count). ``option`` is how the caller names it, ``"--epochs {}"`` or ``"epochs={}"``."""
    done, position = checkpoint["epoch"], checkpoint.get("position")
    if position is not None and epochs <= done:
        steps = math.ceil(len(position["order"]) / batch_size)
        return (f"{option.format(epochs)} would end {run_dir} after epoch {epochs}, but it stopped inside epoch "
                f"{done + 1} ({position['next_batch']} of its {steps} steps trained), and a run is not cut back; "
                f"give {option.format(done + 1)} or more.")
    if epochs < done:
        return (f"{option.format(epochs)} is fewer than the {done} epochs {run_dir} has trained, and a run is not cut "
                f"back; give {option.format(done)} or more.")
    return None


def bound_of(quantity: str) -> str:
    """What a bound bounds where that is not log p(x), to follow its name ("ELBO", "IWAE bound
    K=5"): " of log p(x | y)" for the conditional VAE, " of log p(x_m | x_g)" for quadrant
    completion; "" for log p(x)."""
    return "" if quantity == "log p(x)" else f" of {short_quantity(quantity)}"


def label_kwargs(model, labels: torch.Tensor | None, rows=slice(None)) -> dict:
    """``{"y": labels[rows]}`` for a model conditioned on labels (``model.needs_labels``), else ``{}``."""
    if not getattr(model, "needs_labels", False):
        return {}
    if labels is None:
        raise DataError("this model is conditioned on labels, but the data set has none.")
    return {"y": labels[rows]}


def _count(n: int, noun: str) -> str:
    """"1 epoch", "3 epochs"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@in_eval_mode
def evaluate_elbo(model: Callable, guide: Callable, images: torch.Tensor, batch_size: int = 1000,
                  analytic_kl: bool = False, labels: torch.Tensor | None = None) -> dict[str, float]:
    """Mean ELBO, reconstruction and KL over ``images`` ``[N, C, H, W]`` (given ``labels``
    for a conditional model), nats per example, and the standard error of each mean over the
    examples, ``elbo_stderr``, ``reconstruction_stderr`` and ``kl_stderr``: sqrt(s^2 / N) with
    s^2 the unbiased sample variance of the per-example values (NaN for one example: unknown). The
    model and guide are evaluated in evaluation mode and left as they were (:func:`in_eval_mode`)."""
    totals = torch.zeros(6, dtype=torch.float64)  # sums of the three terms, then of their squares
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            rows = slice(start, start + batch_size)
            terms: ELBOTerms = elbo_terms(model, guide, images[rows], analytic_kl=analytic_kl,
                                          **label_kwargs(model, labels, rows))
            check_one_value_per_example(terms.elbo, min(batch_size, len(images) - start))
            values = torch.stack([terms.elbo.double(), terms.reconstruction.double(), terms.kl.double()])
            totals += torch.cat([values.sum(-1), (values ** 2).sum(-1)]).cpu()
    n = len(images)
    means, squares = (totals / n).view(2, 3).tolist()
    result = {}
    for name, mean, square in zip(("elbo", "reconstruction", "kl"), means, squares):
        result[name], result[f"{name}_stderr"] = mean, mean_stderr(mean, square, n)
    return result


def mean_stderr(mean: float, mean_square: float, n: int) -> float:
    """The standard error of a mean of ``n`` values from their mean and mean square:
    sqrt(s^2 / n), s^2 = (mean_square - mean^2) n / (n - 1) (clamped at 0 against rounding).
    One value has no spread to estimate it from: NaN (unknown, printed "± nan", null in the JSON
    files), as for a training epoch of one batch, not 0, which would claim an exact mean."""
    if n < 2:
        return math.nan
    return math.sqrt(max(0.0, mean_square - mean ** 2) / (n - 1))


def with_stderr(row: dict, key: str, width: int) -> str:
    """``row[key]`` as "-239.37 ± 0.41" (two decimals, the mean ``width`` wide), with the
    standard error ``row[key + "_stderr"]`` where the row has one."""
    error = row.get(f"{key}_stderr")
    return f"{row[key]:{width}.2f}" + ("" if error is None else f" ± {error:.2f}")


def make_adam(parameters: list, learning_rate: float) -> torch.optim.Adam:
    """Adam with its fused kernel (one call per step instead of one loop per tensor; same
    update rule), falling back to the default implementation where it is unavailable."""
    try:
        return torch.optim.Adam(parameters, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(parameters, lr=learning_rate)


def continue_stream(generator: torch.Generator, state: torch.Tensor) -> bool:
    """Set ``generator`` to a saved ``state`` and return True. A state saved by a generator of
    another kind of device cannot be set (a CPU Mersenne Twister's is 5,056 bytes, a CUDA
    Philox's 16): a run trained on one and resumed on the other. The generator is then seeded
    from a digest of the saved state, so the same checkpoint always goes on the same way,
    and False is returned."""
    import hashlib

    state = state.cpu()
    if state.numel() == generator.get_state().numel():
        generator.set_state(state)
        return True
    digest = hashlib.sha256(state.numpy().tobytes()).digest()
    generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return False


class Trainer:
    """Trains ``model`` and ``guide`` on ``dataset`` with ``objective``.

    ``model`` and ``guide`` are ``PyroModule``s or function-style Pyro programs (whose
    parameters live in Pyro's param store; see :mod:`pyro_vae.inference.programs`).
    ``objective`` is any object with ``differentiable_loss(model, guide, x)`` (Pyro's
    ``Trace_ELBO``, ``TraceMeanField_ELBO``, or :class:`~pyro_vae.inference.objectives.IWAELoss`).
    ``on_epoch(trainer, row)`` is called after each epoch's checkpoint (figures, logs), with
    the random streams kept: what it draws moves no number of the run. ``continue_with`` is how
    the message of a run stopped by a signal says to continue it (default ``--resume RUN_DIR``).

    As ``pyro-vae train``, it seeds torch's global RNG with ``seed`` when constructed (and sets
    it from the checkpoint in :meth:`load`), then draws from it while it trains: a notebook's
    own torch stream is reset and moved. :func:`pyro_vae.fit` drives a Trainer with its
    caller's random states kept; use it where those must stay as they were.
    """

    def __init__(self, model, guide, objective, dataset: ImageDataset, settings: TrainSettings,
                 run_dir: Path | None = None, seed: int = 0, device: str | torch.device = "cpu",
                 extra_state: dict | None = None, on_epoch: Callable | None = None,
                 progress: bool | None = None, log: Callable[[str], None] = print,
                 distributed: DistributedContext | None = None, continue_with: str | None = None):
        # Function-style programs (pyro.module inside def model(x)) keep their parameters in
        # Pyro's param store; one traced run finds them.
        model, guide = trainable_programs(model, guide, dataset.train.images[:1],
                                          **label_kwargs(model, dataset.train.labels, slice(0, 1)))
        self.model, self.guide, self.objective = model, guide, objective
        self.dataset, self.settings = dataset, settings
        self.run_dir = Path(run_dir) if run_dir else None
        self.device = torch.device(device)
        self.extra_state = extra_state or {}
        self.ctx = distributed or DistributedContext()
        self.on_epoch, self.progress = on_epoch, progress
        # how a run stopped by a signal is continued, in the caller's terms (the CLI's by default)
        self.continue_with = continue_with or f"--resume {self.run_dir}"
        self.log = log if self.ctx.is_main else (lambda message: None)
        self.parameters = [p for p in list(model.parameters()) + list(guide.parameters()) if p.requires_grad]
        self.ctx.broadcast_parameters(self.parameters)
        self.optimizer = make_adam(self.parameters, settings.learning_rate)
        # The batch order, the binarization noise and the guide's latent noise are drawn alike
        # on every rank, the noise for the whole global batch (each rank keeps its rows), so an
        # example's draws depend on its position in the global batch, not on the number of
        # processes. The latent noise is reseeded from (seed, step) every step.
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.noise_generator = torch.Generator(device=self.device).manual_seed(seed + 7919)
        self.latent_seed = seed + 104729
        self.latent_generator = torch.Generator(device=self.device)
        # torch's global RNG (validation's draws on rank 0; latent sites of other families)
        # starts alike in one process and on rank 0 of many.
        torch.manual_seed(seed + self.ctx.rank)
        self.state = TrainState()
        self.position: dict | None = None  # where a mid-epoch checkpoint stopped
        self.epoch_total = EpochTotal()  # the epoch's running sums (its mean and standard error)
        self.epoch_clock = EpochClock()  # the epoch's time so far
        self._stop_signal: int | None = None
        # In evaluation mode: in training mode the probe moved batch normalisation's running statistics
        # by one training image before the first step (its draws are kept: the random streams follow them).
        with torch.no_grad(), evaluation_mode(guide):
            probe = poutine.trace(guide).get_trace(dataset.train.images[:1],
                                                   **label_kwargs(model, dataset.train.labels, slice(0, 1)))
        self.latent_names = latent_sites(probe)

    # -- one epoch ---------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.dataset.train) / self.settings.batch_size)

    def kl_weight(self, step: int | None = None) -> float:
        """The KL weight of optimizer step ``step`` (0-based; by default the next one, ``state.step``)."""
        warmup = self.settings.kl_warmup_steps or self.settings.kl_warmup_epochs * self.steps_per_epoch()
        return linear_warmup(self.state.step if step is None else step, warmup, self.settings.beta)

    def train_epoch(self) -> float:
        """One pass over the training set; returns the mean training bound (nats/example).

        A run stopped mid-epoch (SIGINT/SIGTERM) saved the epoch's order, the next batch and
        the running total; it continues from there with the RNGs as they were.
        """
        train, size = self.dataset.train.images, self.settings.batch_size
        order, first, self.epoch_total = self.begin_epoch(len(train))
        batches = range(first * size, len(train), size)
        if self.progress is not False and self.ctx.is_main:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=f"epoch {self.state.epoch + 1}", unit="batch",
                           leave=False, disable=None if self.progress is None else False)
        last_finite = None
        for start in batches:
            global_rows = order[start:start + size]
            rows = self.ctx.shard(global_rows)
            beta = self.kl_weight()
            value = 0.0
            self.optimizer.zero_grad(set_to_none=True)
            if self.dataset.binarize == "dynamic":  # drawn for the global batch on every rank
                x = binarize_batch(train[global_rows], self.noise_generator)[self.ctx.shard_rows(len(global_rows))]
            elif len(rows):
                x = train[rows]
            if len(rows):
                model, guide = self.model, self.guide
                if beta != 1.0:
                    model = scale_sites(model, self.latent_names, beta)
                    guide = scale_sites(guide, self.latent_names, beta)
                with self.global_noise(len(global_rows)):
                    loss = self.objective.differentiable_loss(
                        model, guide, x, **label_kwargs(self.model, self.dataset.train.labels, rows))
                value = loss.item()
                if math.isfinite(value):
                    loss.backward()
            # One all-reduce carries the gradients, a NaN flag and a stop request.
            stop, bad = self.ctx.sum_gradients(self.parameters, self._stop_signal is not None,
                                               not math.isfinite(value))
            if bad:
                raise TrainingError(
                    f"the loss became {value if not math.isfinite(value) else 'nan on another rank'} at step "
                    f"{self.state.step + 1} (epoch {self.state.epoch + 1}); the last finite loss was "
                    f"{last_finite}; lower --learning-rate, set --clip-norm, or raise --likelihood-scale "
                    "(the last good checkpoint is kept)."
                )
            last_finite = value / max(1, len(rows))
            if self.settings.clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.parameters, self.settings.clip_norm)
            self.optimizer.step()
            # the global batch's sum, on every rank: its mean and standard error are over the global
            # batches, as one process has them, and a mid-epoch checkpoint (rank 0's) holds all ranks' sums
            self.epoch_total.add(self.ctx.sum(value, self.device), len(global_rows))
            self.state.step += 1
            if stop:
                self._save_interrupted(order, start // size + 1)
        return -self.epoch_total.total / len(train)

    def global_noise(self, global_size: int) -> GlobalBatchNoise:
        """A handler (the outermost, so that every plate has broadcast first) that draws the
        guide's Normal latent noise for the whole global batch of this step from a generator
        keyed by (seed, step), this rank keeping its rows."""
        self.latent_generator.manual_seed((self.latent_seed * 1_000_003 + self.state.step) % 2**63)
        return GlobalBatchNoise(self.latent_generator, self.ctx.shard_rows(global_size), global_size)

    def begin_epoch(self, n: int) -> tuple[torch.Tensor, int, EpochTotal]:
        """Set the epoch's learning rate and return its order of the ``n`` training examples,
        the first batch and the running sums: fresh, or where a stopped epoch left off."""
        # Derived from the epoch, so a resumed run needs no scheduler state.
        for group in self.optimizer.param_groups:
            group["lr"] = self.settings.learning_rate * self.settings.lr_decay ** self.state.epoch
        if self.position is not None:
            position, self.position = self.position, None
            # a checkpoint of an older version holds the total alone: the epoch's s.e. is then unknown
            sums = EpochTotal(position["total"], position.get("squares", math.nan), position.get("batches", 0))
            # the time the stopped session spent on the epoch (a checkpoint of an older version: none kept)
            self.epoch_clock.seconds_before = position.get("seconds", 0.0)
            self.epoch_clock.cpu_seconds_before = position.get("cpu_seconds", 0.0)
            return position["order"], position["next_batch"], sums
        return torch.randperm(n, generator=self.generator, device=self.device), 0, EpochTotal()

    def resumes_at(self) -> str:
        """Where a loaded run goes on, in words: "after epoch N", or, for a run stopped inside
        an epoch, "inside epoch N + 1, after S of its steps"."""
        if self.position is None:
            return f"after epoch {self.state.epoch}"
        steps = math.ceil(len(self.position["order"]) / self.settings.batch_size)
        return f"inside epoch {self.state.epoch + 1}, after {self.position['next_batch']} of its {steps} steps"

    def _save_interrupted(self, order: torch.Tensor, next_batch: int) -> None:
        if self.run_dir is not None:
            sums = self.epoch_total
            self.position = {"order": order, "next_batch": next_batch, "total": sums.total, "squares": sums.squares,
                             "batches": sums.batches, "seconds": self.epoch_clock.seconds(),
                             "cpu_seconds": self.epoch_clock.cpu_seconds()}
            self.save(self.run_dir / LAST)
            self.position = None
        self._interrupted(f"step {self.state.step} (epoch {self.state.epoch + 1})")

    def _interrupted(self, where: str) -> None:
        """Raise :class:`TrainingInterrupted` for the stop requested after ``where``, the run's
        last checkpoint holding it."""
        signum = self._stop_signal or signal.SIGTERM  # another rank may have been signalled
        message = f"stopped by {signal.Signals(signum).name} after {where}"
        if self.run_dir is not None:
            message += f"; checkpoint saved, continue with {self.continue_with}"
        raise TrainingInterrupted(message + ".", signum)

    def _stop_after_epoch(self) -> None:
        """Stop on a signal that came after the epoch's last step (while it was validated,
        committed, or its figures drawn): the epoch is committed, so the run stops here rather
        than train a step more, or, after the last epoch, go on to its evaluation as if
        nothing had been asked. Every rank agrees (each takes part in the sum)."""
        if self.ctx.sum(float(self._stop_signal is not None), self.device) > 0:
            self._interrupted(f"epoch {self.state.epoch}")

    # -- the loop ----------------------------------------------------------------------
    def fit(self) -> TrainState:
        """Train until ``settings.epochs`` are done. SIGINT and SIGTERM stop the loop at the
        next step boundary with a resumable checkpoint (:class:`TrainingInterrupted`)."""
        with self._stop_on_signals():
            return self._fit()

    @contextlib.contextmanager
    def _stop_on_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be installed from the main thread
            return
        def request_stop(signum, frame):
            self._stop_signal = signum
        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def selection_key(self) -> str:
        """The history column the best model is chosen by (see :meth:`validate`)."""
        return {"valid-iwae": "valid_iwae", "valid-loglik": "valid_loglik"}.get(self.settings.selection_rule(),
                                                                                "valid_elbo")

    def stopped_early(self) -> bool:
        """Whether ``settings.patience`` epochs have passed without a better selection criterion
        (rank 0 holds the history; the other ranks take its answer, so all stop together)."""
        if not self.settings.patience:
            return False
        criteria = [row[self.selection_key()] for row in self.state.history]
        stop = self.ctx.is_main and epochs_since_best(criteria) >= self.settings.patience
        return self.ctx.sum(float(stop), self.device) > 0

    def _fit(self) -> TrainState:
        committed = False  # an epoch committed by this call: a signal since then stops before the next
        while self.state.epoch < self.settings.epochs and not self.stopped_early():
            if committed:
                self._stop_after_epoch()
            committed = True
            self.epoch_clock = EpochClock()
            self.model.train(), self.guide.train()
            train_bound = self.train_epoch()
            self._refuse_non_finite_parameters()  # before the epoch is validated and committed
            seconds, cpu_seconds = self.epoch_clock.seconds(), self.epoch_clock.cpu_seconds()
            self.model.eval(), self.guide.eval()
            self.state.epoch += 1
            if not self.ctx.is_main:  # rank 0 alone evaluates and writes
                if self.run_dir is not None:
                    self.save(self.run_dir / LAST)  # takes part in gathering the RNG states
                continue
            row = {"epoch": self.state.epoch, "step": self.state.step, "train_objective": train_bound}
            metrics, criterion = self.validate()
            # The standard errors go last: metrics.csv's columns of runs written before they
            # existed keep their places (a resumed old run only gains columns at the end).
            errors = {key: metrics.pop(key) for key in list(metrics) if key.endswith("_stderr")}
            errors["train_objective_stderr"] = self.epoch_total.stderr(len(self.dataset.train))  # the newest: last
            row.update(metrics)
            row["seconds"] = seconds
            row["cpu_seconds"] = cpu_seconds  # this process's CPU time for the epoch's training
            row.update(errors)
            self.state.history.append(row)
            improved = criterion > self.state.best_valid_elbo
            if improved:
                self.state.best_valid_elbo, self.state.best_epoch = criterion, self.state.epoch
                self.state.best_parameters = self.parameter_snapshot()
            self.log(self.describe(row) + ("  *best" if improved else ""))
            if self.run_dir is not None:
                self.save(self.run_dir / LAST)  # the commit: from here on the epoch counts
                if improved:
                    self.write_best()
            if self.on_epoch is not None:
                # its figures and TensorBoard grids draw from the global streams, which the next
                # epoch's validation and the test ELBO draw from: kept, lest they move those numbers
                with random_state_kept():
                    self.on_epoch(self, row)
        if committed:
            self._stop_after_epoch()
        if self.state.epoch < self.settings.epochs and self.stopped_early():
            self.log(f"stopping early: no better {self.selection_key()} for {_count(self.settings.patience, 'epoch')}")
        return self.state

    def validate(self) -> tuple[dict, float]:
        """Metrics of the epoch's model on the validation split, each mean over examples with
        its standard error over them (``NAME_stderr``), and the number the best model is
        chosen by (the ELBO, or the IWAE bound with ``selection_k``)."""
        valid_split = self.dataset.valid
        valid = evaluate_elbo(self.model, self.guide, valid_split.images, self.settings.eval_batch_size,
                              self.settings.analytic_kl, valid_split.labels)
        metrics = {"valid_elbo": valid["elbo"], "valid_reconstruction": valid["reconstruction"],
                   # the weight the epoch ended training with (of its last step), not the next epoch's
                   "valid_kl": valid["kl"], "kl_weight": self.kl_weight(self.state.step - 1)}
        criterion = valid["elbo"]
        rule = self.settings.selection_rule()
        if rule == "valid-iwae":
            from pyro_vae.inference.loglik import importance_log_likelihood

            estimate = importance_log_likelihood(
                self.model, self.guide, as_tensor(valid_split.images), k=self.settings.selection_k,
                **label_kwargs(self.model, valid_split.labels))
            metrics["valid_iwae"] = criterion = estimate.mean
        elif rule == "valid-loglik":
            estimate = self.selection_estimate()
            metrics["valid_loglik"] = criterion = estimate.mean
        metrics.update({f"valid_{name}_stderr": valid[f"{name}_stderr"] for name in ("elbo", "reconstruction", "kl")})
        if rule in ("valid-iwae", "valid-loglik"):
            metrics[f"{self.selection_key()}_stderr"] = estimate.stderr
        return metrics, criterion

    def training_objective(self, row: dict) -> str:
        """What the epoch's training number is: the bound itself ("train ELBO", "train IWAE
        bound K=5") only when the KL weight was 1 throughout; otherwise the objective with
        its KL weight, which is not that bound."""
        label, beta = self.settings.objective_label + bound_of(self.settings.quantity), self.settings.beta
        warmup = self.settings.kl_warmup_steps or self.settings.kl_warmup_epochs * self.steps_per_epoch()
        # The epoch's first step (0-based) had the smallest weight, beta * (first + 1) / warmup.
        if warmup and row["step"] - self.steps_per_epoch() + 1 < warmup:
            return f"train objective ({label}, KL warm-up to beta={beta:g})"
        if beta != 1:
            return f"train objective ({label}, beta={beta:g})"
        return f"train {label}"
    def selection_rows(self) -> torch.Tensor:
        """The validation images ``--select-by valid-loglik`` scores: a random subset of
        ``selection_examples`` drawn once from ``selection_seed`` (all if 0), sorted."""
        n, m = len(self.dataset.valid), self.settings.selection_examples
        if not m or m >= n:
            return torch.arange(n)
        generator = torch.Generator().manual_seed(self.settings.selection_seed)
        return torch.randperm(n, generator=generator)[:m].sort().values

    def selection_log_likelihood(self) -> float:
        """Mean log p(x) over :meth:`selection_rows` (nats per example), K = ``selection_k``
        (the mean of :meth:`selection_estimate`)."""
        return self.selection_estimate().mean

    def selection_estimate(self):
        """log p(x) of each of :meth:`selection_rows`, K = ``selection_k``
        (a :class:`~pyro_vae.inference.loglik.LogLikelihoodEstimate`: ``mean``, ``stderr``).

        The importance draws come from a generator reseeded every epoch (the training RNG is
        left as it was), so two epochs are compared on common random numbers. A continuous
        likelihood on 8-bit images is scored on dequantized images (the same ones every epoch):
        a lower bound on their probability mass, as ``evaluate --k`` reports it."""
        from pyro_vae.inference.dequantize import score_log_likelihood
        from pyro_vae.inference.loglik import importance_log_likelihood

        images, labels = self._selection_examples()

        def estimate(x):
            return importance_log_likelihood(self.model, self.guide, x, k=self.settings.selection_k,
                                             **label_kwargs(self.model, labels))

        likelihood, given = getattr(self.model, "likelihood", None), getattr(self.model, "given", None)
        with random_state_kept():  # the training streams go on as if no selection draw was made
            torch.manual_seed(self.settings.selection_seed)
            if likelihood is None:  # a researcher's own model: scored as it is
                return estimate(images)
            # A continuous density on 8-bit images is scored on the same dequantized draws every epoch,
            # as evaluate --k scores it: a bound on their probability mass. On the images as they are,
            # a density can rise by piling onto the 256 grey levels while the mass does not.
            return score_log_likelihood(estimate, images, likelihood.data_kind, self._binary_data(),
                                        dequantized=self._selection_dequantizes(images),
                                        seed=self.settings.selection_seed,
                                        scored=None if given is None else ~given)[0]

    def _selection_examples(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The images (and labels) of :meth:`selection_rows`."""
        valid, rows = self.dataset.valid, self.selection_rows()
        images = as_tensor(valid.images[rows.to(valid.images.device)])
        return images, None if valid.labels is None else valid.labels[rows.to(valid.labels.device)]

    @staticmethod
    def _selection_dequantizes(images: torch.Tensor) -> bool:
        """Images on the 256-level grid k/255 are dequantized for a continuous density (others,
        a researcher's own float tensors, are scored as they are: a density)."""
        from pyro_vae import discrete

        return not discrete.off_grid(images).any()

    def describe_selection(self) -> str:
        """:meth:`TrainSettings.describe_selection`, with the kind of number a validation
        log p(x) is (:mod:`~pyro_vae.inference.kinds`) where it chooses the best epoch."""
        from pyro_vae.inference.kinds import number_kind

        text = self.settings.describe_selection()
        likelihood = getattr(self.model, "likelihood", None)
        if self.settings.selection_rule() != "valid-loglik" or likelihood is None:
            return text
        dequantized = (likelihood.data_kind == "unit-interval" and not self._binary_data()
                       and self._selection_dequantizes(self._selection_examples()[0]))
        return f"{text}; a {number_kind(likelihood.data_kind, self._binary_data(), dequantized)}"

    def _binary_data(self) -> bool:
        """Whether the images are 0/1 draws (binarized, or binarized MNIST), as ``runs.binary_data`` says of a run."""
        return self.dataset.binarize != "none" or self.dataset.name == "binarized-mnist"

    def _selection_kinds(self) -> tuple[str, str] | None:
        """The kinds of the validation log p(x) that selects (``valid-loglik``) and of the validation
        ELBO beside it on the epoch's line, where they differ: a continuous density on 8-bit images
        is selected by a dequantized bound on their mass, while its ELBO is a density on the grey
        levels as they are (thousands of nats apart, on different scales). None where they are of
        one kind, or a researcher's own model has no library likelihood to say it."""
        from pyro_vae.inference.kinds import number_kind

        likelihood = getattr(self.model, "likelihood", None)
        if likelihood is None or likelihood.data_kind != "unit-interval" or self._binary_data():
            return None
        if not hasattr(self, "_kinds_of_selection"):  # the same validation images every epoch
            dequantized = self._selection_dequantizes(self._selection_examples()[0])
            kinds = (number_kind(likelihood.data_kind, False, dequantized), number_kind(likelihood.data_kind, False))
            self._kinds_of_selection = kinds if kinds[0] != kinds[1] else None
        return self._kinds_of_selection

    def describe(self, row: dict) -> str:
        """The epoch's log line: each validation mean ± its standard error over the validation
        images; with ``selection_k`` also the validation IWAE bound (or log p(x)) that
        chooses the best model."""
        selection = ""
        quantity = self.settings.quantity  # the conditional VAE's log p(x | y), quadrant completion's log p(x_m | x_g)
        for key, name in (("valid_iwae", f"valid IWAE bound{bound_of(quantity)}"),
                          ("valid_loglik", f"valid {short_quantity(quantity)}")):
            if key in row:
                kinds = self._selection_kinds() if key == "valid_loglik" else None
                unlike = f"; a {kinds[0]}, unlike the ELBO, a {kinds[1]}" if kinds else ""
                selection = f"  {name} K={self.settings.selection_k} {with_stderr(row, key, 9)} (selects{unlike})"
        if not getattr(getattr(self, "model", None), "has_marginal_likelihood", True):
            # an autoencoder: its "ELBO" is the reconstruction term alone, with no KL, and bounds nothing
            return (f"epoch {row['epoch']:>3}  {self.training_objective(row)} {with_stderr(row, 'train_objective', 9)}  valid "
                    f"reconstruction log p(x | code) {with_stderr(row, 'valid_reconstruction', 9)} (not a bound on "
                    f"log p(x): an autoencoder has none){selection}  {row['seconds']:6.1f} s")
        return (f"epoch {row['epoch']:>3}  {self.training_objective(row)} {with_stderr(row, 'train_objective', 9)}  valid ELBO"
                f"{bound_of(self.settings.quantity)} {with_stderr(row, 'valid_elbo', 9)} (recon {with_stderr(row, 'valid_reconstruction', 9)}, KL "
                f"{with_stderr(row, 'valid_kl', 7)}){selection}  {row['seconds']:6.1f} s")

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The whole training state; in a distributed run every rank must call it (the RNG
        states of all ranks are gathered)."""
        rng = {"torch": torch.get_rng_state(), "data": self.generator.get_state(),
               "noise": self.noise_generator.get_state()}
        if self.device.type == "cuda" and torch.cuda.is_available():  # a CPU run leaves CUDA uninitialised
            rng["cuda"] = [state.cpu() for state in torch.cuda.get_rng_state_all()]
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "guide": self.guide.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.state.epoch,
            "step": self.state.step,
            "best_valid_elbo": self.state.best_valid_elbo,
            "history": self.state.history,
            "best": (None if self.state.best_parameters is None
                     else {"epoch": self.state.best_epoch, **self.state.best_parameters}),
            "rng": rng,
            "rng_ranks": self.ctx.gather(rng) if self.ctx.active else [],
            "world_size": self.ctx.world_size,
            "position": self.position,
            **self.extra_state,
        }

    def _refuse_non_finite_parameters(self) -> None:
        """A :class:`TrainingError` where a parameter is NaN or infinite after the epoch's steps: a
        step whose loss was finite but whose gradient was not (each step checks its loss alone)
        left them so, and on the epoch's last step the epoch would be committed with them, a
        checkpoint_last.pt that no run could resume. Once an epoch, on every rank (their
        parameters are the same)."""
        for part, program in (("model", self.model), ("guide", self.guide)):
            # a module's names, or a function-style program's param-store names (ParamStoreProgram)
            named = (program.named_parameters() if isinstance(program, torch.nn.Module)
                     else zip(getattr(program, "names", ()), program.parameters()))
            for name, parameter in named:
                if not torch.isfinite(parameter).all():
                    raise TrainingError(
                        f"the {part}'s parameter {name} became NaN or infinite in epoch {self.state.epoch + 1} (a "
                        "step's gradient was not finite though its loss was); lower --learning-rate or set "
                        "--clip-norm (the last good checkpoint is kept).")

    def save(self, path: Path) -> None:
        """Write a checkpoint (rank 0 only; every rank must call this)."""
        state = self.state_dict()
        if self.ctx.is_main:
            save_checkpoint(path, state)

    def parameter_snapshot(self) -> dict:
        """Copies of the model's and guide's current parameters and buffers."""
        return {part: {k: v.detach().clone() for k, v in module.state_dict().items()}
                for part, module in (("model", self.model), ("guide", self.guide))}

    def best_checkpoint(self) -> dict:
        """The contents of ``checkpoint_best.pt``, derived from the training state alone."""
        return best_checkpoint({"format": CHECKPOINT_FORMAT, "epoch": self.state.epoch, "step": self.state.step,
                                "best_valid_elbo": self.state.best_valid_elbo, "history": self.state.history,
                                "best": (None if self.state.best_parameters is None else
                                         {"epoch": self.state.best_epoch, **self.state.best_parameters}),
                                **self.extra_state})

    def write_best(self) -> None:
        """Write ``checkpoint_best.pt`` from the committed state (after an improvement, and on
        resume, where a kill may have left it behind the last checkpoint)."""
        if self.run_dir is not None and self.ctx.is_main and self.state.best_parameters is not None:
            save_checkpoint(self.run_dir / BEST, self.best_checkpoint())

    def load(self, path: Path) -> None:
        """Continue from the checkpoint at ``path``: parameters, optimizer, RNGs, history."""
        checkpoint = load_checkpoint(path, map_location=self.device)
        if checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a pyro-vae checkpoint.")
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.guide.load_state_dict(checkpoint["guide"])
        except RuntimeError as err:
            raise CheckpointError(
                f"checkpoint {path} does not fit the configured model ({str(err).splitlines()[0]}); "
                "use the run's own config.toml."
            ) from None
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        best = checkpoint.get("best")
        self.state = TrainState(checkpoint["epoch"], checkpoint["step"], checkpoint["best_valid_elbo"],
                                [current_row(row) for row in checkpoint["history"]], best["epoch"] if best else 0,
                                {"model": best["model"], "guide": best["guide"]} if best else None)
        self.position = checkpoint.get("position")
        if checkpoint.get("world_size", 1) != self.ctx.world_size:
            raise CheckpointError(
                f"{path} was written by a run on {checkpoint.get('world_size', 1)} processes; resume it "
                f"with the same number (this launch has {self.ctx.world_size})."
            )
        rng = checkpoint["rng_ranks"][self.ctx.rank] if self.ctx.active else checkpoint["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        exact = [continue_stream(self.generator, rng["data"]), continue_stream(self.noise_generator, rng["noise"])]
        if not all(exact):
            self.log(f"{path} saved its data-order and noise streams on another kind of device than {self.device}: "
                     "they go on from new streams seeded from the saved ones (the same every time, but not the "
                     "draws a resume on the run's own kind of device makes).")
        if "cuda" in rng and torch.cuda.is_available():  # as many devices as both machines have
            for index, state in enumerate(rng["cuda"][:torch.cuda.device_count()]):
                torch.cuda.set_rng_state(state.cpu(), index)
