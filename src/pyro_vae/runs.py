"""Run directories: start, resume and reopen a training run.

A run directory holds

* ``config.toml``: the resolved configuration;
* ``metrics.csv``: one row per epoch (train bound, validation ELBO and its parts, seconds);
* ``checkpoint_last.pt`` and ``checkpoint_best.pt`` (best validation ELBO);
* ``samples.png`` and ``reconstructions.png`` from the best model;
* ``summary.json``: test ELBO of the best model, timings, versions;
* for M2 and M1+M2, ``labelled_examples.json`` (the labelled images) and for M1+M2
  ``m1_codes.json`` (the M1 run, its active units and the codes' standardization).

Every file is written atomically, so an interrupted run never leaves one half-written.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import pyro
import torch

from pyro_vae.build import build_vae
from pyro_vae.config import SEMI_SUPERVISED, Config, check_device, show_value
from pyro_vae.data.datasets import (FolderOptions, ImageDataset, Split, as_tensor, balanced_label_subset, class_names,
                                    load_dataset)
from pyro_vae.data.folders import ByteImages
from pyro_vae.data.sources import cache_dir
from pyro_vae.errors import CheckpointError, ConfigError, DataError, PyroVAEError, TrainingInterrupted, WriteError
from pyro_vae.inference.checkpoint import BEST, LAST, atomic_write_text, load_checkpoint
from pyro_vae.inference.codes import CodeScaler, code_dataset, training_code_scales
from pyro_vae.inference.distributed import DistributedContext, init_from_environment, shutdown
from pyro_vae.inference.objectives import make_objective
from pyro_vae.inference.semisupervised import SemiSupervisedTrainer, tuned_supervised_baseline
from pyro_vae.inference.train import (Trainer, TrainSettings, best_checkpoint, current_row, cut_back,
                                      epochs_since_best, evaluate_elbo, patience_stop)
from pyro_vae.nn import classifier as nn_classifier

CONFIG = "config.toml"
METRICS = "metrics.csv"
SUMMARY = "summary.json"
LABELLED = "labelled_examples.json"
CODES = "m1_codes.json"  # --model m1m2: the M1 run, its active units and the codes' standardization
#: How a user of the CLI fixes data outside a likelihood's support (Python users get the
#: likelihood's own advice, which names Python functions).
CLI_SUPPORT_HINTS = {
    "bernoulli": "binarize them with --binarize dynamic|static or choose a continuous likelihood "
                 "(--likelihood continuous-bernoulli or gaussian)",
    "continuous-bernoulli": "scale pixels to [0, 1] or use --likelihood gaussian",
    **{name: "give it 8-bit images as loaded (--binarize none) or choose a continuous likelihood "
             "(--likelihood gaussian-learned or continuous-bernoulli)"
       for name in ("discretized-logistic", "discretized-logistic-mixture", "discretized-gaussian",
                    "categorical-256")},
}
#: Options that may change when a run is resumed; everything else must match.
RESUMABLE_CHANGES = {"train.epochs", "train.device", "train.figure_every", "train.figures", "train.tensorboard", "data.workers",
                     "data.cache_images", "train.patience", "train.mlflow"}


@dataclass
class Run:
    """A reopened run: its configuration and its (model, guide) with loaded parameters."""

    run_dir: Path
    config: Config
    model: torch.nn.Module
    guide: torch.nn.Module
    device: torch.device
    checkpoint: dict

    def dataset(self) -> ImageDataset:
        check_own_data(self.run_dir, self.checkpoint, self.config)
        return open_dataset(self.config, run_dir=self.run_dir).to(self.device)


def check_own_data(run_dir: Path, checkpoint: dict, config: Config) -> None:
    """Refuse to load the data set a run's config.toml names for a run that ``pyro_vae.fit``
    trained on other data (tensors, or an ImageDataset of another name; its checkpoint's
    ``fit_data``): the run would be scored, drawn or resumed on images it never saw."""
    given = checkpoint.get("fit_data")
    if given is None or given == config.data.dataset:
        return
    what = "tensors passed in Python" if given == "tensors" else f"an ImageDataset named '{given}' passed in Python"
    raise DataError(f"{run_dir} was trained by pyro_vae.fit() on {what}, not on the {config.data.dataset} its "
                    "config.toml names, so its data cannot be loaded here; use it in Python on the same data "
                    f"(run = pyro_vae.runs.open_run('{run_dir}'); pyro_vae.importance_log_likelihood(run.model, "
                    "run.guide, x_test, k=1000), or fit(..., resume=True) to train on).")


def open_dataset(config: Config, progress: bool = False, run_dir: Path | None = None) -> ImageDataset:
    """The run's data set, as its configuration names it (``run_dir``: the saved run it is read
    for, whose data_dir no option changes)."""
    data = config.data
    if run_dir is not None and data.data_dir and not Path(data.data_dir).expanduser().is_dir():
        # "check --data-dir" would send the user to an option evaluate lacks and --resume refuses to change
        raise DataError(f"{run_dir} was trained on the data in {data.data_dir}, which is no longer a folder; put the "
                        f"data back there, or write its new folder as data_dir in {Path(run_dir) / CONFIG}.")
    folder = FolderOptions(size=data.image_size, mode=data.image_mode, workers=data.workers,
                           cache_dir=cache_dir() / "image-folders" if data.cache_images else None,
                           skip_bad=data.skip_bad_images, progress=progress)
    # binarized MNIST is loaded as it is; runs recorded before that rule say binarize "dynamic"
    binarize = "none" if data.dataset == "binarized-mnist" else data.binarize
    seed = config.train.seed if binarize == "static" else 0  # the one binarization a seed draws
    return load_dataset(data.dataset, data.data_dir, binarize, seed, data.train_limit,
                        folder=folder if data.dataset == "image-folder" else None)


def denormals_are_flushed() -> bool:
    """Whether the CPU currently treats subnormal floats as zero (torch has no getter)."""
    return (torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() == 0.0


@contextlib.contextmanager
def flushed_denormals():
    """Within the block, treat subnormal floats (below about 1e-38) as zero on the CPU, then
    restore the previous setting. As a VAE trains, some activations and gradients decay into
    that range, where x86 arithmetic is many times slower: measured here, an M2 step went from
    0.10 s to 0.24 s by its 17th epoch. The change to the numbers is below float32's normal
    range."""
    before = denormals_are_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def num_classes(dataset: ImageDataset) -> int:
    """How many values the labels take (0 for unlabelled data)."""
    if dataset.train.labels is None:
        return 0
    return len(dataset.class_names) or int(dataset.train.labels.max()) + 1


def resolve_device(name: str, python: bool = False) -> torch.device:
    """The device ``name`` (``cpu``, ``cuda`` or ``cuda:N``) if this machine has it, else a
    ConfigError; ``python``: name the fix as fit's ``device=`` argument, not ``--device``."""
    check_device(name, f"device={name!r}" if python else None)  # evaluate, sample, plot take --device without a Config
    fix = "device='cpu'" if python else "--device cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' was asked for but CUDA is not available here; use {fix}.")
    index = int(name.split(":")[1]) if ":" in name else 0
    if name.startswith("cuda") and index >= torch.cuda.device_count():
        raise ConfigError(f"device '{name}' was asked for but this machine has {torch.cuda.device_count()} CUDA "
                          f"device(s); give cuda:0 to cuda:{max(torch.cuda.device_count() - 1, 0)}.")
    return torch.device(name)


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG).is_file() and (path / LAST).is_file()


def read_run_config(run_dir: Path) -> Config:
    run_dir = Path(run_dir)
    if run_dir.is_file():  # `train --resume configs/x.toml`: a file where a run's folder goes
        raise CheckpointError(f"{run_dir} is a file, not a run directory; give the folder of a training run "
                              f"(its --run-dir){' (a config file goes to --config)' if run_dir.suffix == '.toml' else ''}.")
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist.")
    if not is_run_dir(run_dir):
        raise CheckpointError(
            f"{run_dir} is not a pyro-vae run directory (it lacks "
            f"{' and '.join(n for n in (CONFIG, LAST) if not (run_dir / n).is_file())}); "
            "give the --run-dir of a training run."
        )
    return Config.load(run_dir / CONFIG).validate(check_effect=False)  # as it ran, whatever today's rules


def open_run(run_dir: Path, which: str = "best", device: str | None = None) -> Run:
    """Reopen a run with the parameters of its ``best`` or ``last`` checkpoint."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    dev = resolve_device(device or config.train.device)
    checkpoint = load_checkpoint(run_dir / LAST, map_location=dev)
    if which == "best":
        checkpoint = best_of_run(run_dir, checkpoint, dev)
    image_shape = tuple(checkpoint.get("image_shape", (1, 28, 28)))
    model, guide = build_vae(config.model, image_shape, checkpoint.get("num_classes", 0), check_effect=False)
    try:
        model.load_state_dict(checkpoint["model"])
        guide.load_state_dict(checkpoint["guide"])
    except (RuntimeError, KeyError) as err:
        raise CheckpointError(
            f"the checkpoint in {run_dir} does not fit its config.toml ({str(err).splitlines()[0]})."
        ) from None
    check_finite_weights(model, guide, run_dir / (BEST if which == "best" else LAST),
                         "last" if which == "best" else "best")
    model.to(dev).eval(), guide.to(dev).eval()
    return Run(run_dir, config, model, guide, dev, checkpoint)


def best_of_run(run_dir: Path, last: dict, device) -> dict:
    """The best model's checkpoint: ``checkpoint_best.pt``, unless a kill after the epoch's
    commit left it missing or behind the last checkpoint (the run's record, see
    :mod:`pyro_vae.inference.train`), whose best state it is then derived from."""
    committed = last.get("best")  # None in runs from before the last checkpoint carried it
    if committed is not None and not (run_dir / BEST).exists():
        return best_checkpoint(last)
    best = load_checkpoint(run_dir / BEST, map_location=device)
    if committed is not None and best.get("epoch") != committed["epoch"]:
        return best_checkpoint(last)
    return best


def check_finite_weights(model: torch.nn.Module, guide: torch.nn.Module, path: Path, other: str = "last") -> None:
    """Refuse a checkpoint whose model or guide holds NaN or infinite numbers: every
    estimate and figure drawn from it would be NaN."""
    bad = [f"{part}.{name}" for part, module in (("model", model), ("guide", guide))
           for name, tensor in module.state_dict().items()
           if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise CheckpointError(f"{path} holds NaN or infinite weights (in {bad[0]}{more}), so nothing computed "
                              f"from it would be a number; train the run again, or evaluate its other checkpoint "
                              f"(--checkpoint {other}).")


def write_metrics(path: Path, history: list[dict]) -> None:
    if not history:
        return
    out = io.StringIO()
    # The union of the rows' keys, in order: a run resumed by a newer version may add columns.
    fieldnames = list(dict.fromkeys(key for row in history for key in row))
    writer = csv.DictWriter(out, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, out.getvalue())


def remove_temporaries(run_dir: Path) -> None:
    """Delete the hidden temporary files (``.NAME.*.tmp``, ``.NAME.tmp.png``) that a killed
    writer leaves behind; they are never read."""
    for path in Path(run_dir).glob(".*.tmp*"):
        with contextlib.suppress(OSError):  # a read-only directory: the first write will say so
            path.unlink(missing_ok=True)


def read_json(path: Path, fix: str) -> dict:
    """The JSON object in ``path``, or one sentence naming the file and ``fix`` (how to
    write it again) when it is not one (cut short, edited by hand, another file)."""
    try:
        payload = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not a readable JSON file ({err}); {fix}.") from None
    if not isinstance(payload, dict):
        raise DataError(f"{path} does not hold a JSON object; {fix}.")
    return payload


def json_ready(value):
    """``value`` (dicts, lists, numbers, strings) with every non-finite float as None: JSON has
    no NaN or infinity, and the bare ``NaN`` Python would write (a standard error that is
    unknown, as an epoch of one batch leaves ``train_objective_stderr``) is refused by strict
    readers (JavaScript's ``JSON.parse``, Go, jq 1.6)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


def write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(json_ready(payload), indent=2, allow_nan=False) + "\n")


def _check_resume_changes(saved: Config, requested: Config) -> None:
    saved_d, req_d = saved.to_dict(), requested.to_dict()
    for section, table in saved_d.items():
        for key, value in table.items():
            if req_d[section][key] != value and f"{section}.{key}" not in RESUMABLE_CHANGES:
                raise ConfigError(
                    f"cannot change {section}.{key} when resuming ({value!r} in the run, "
                    f"{req_d[section][key]!r} asked for); start a new --run-dir instead."
                )


@contextlib.contextmanager
def run_dir_lock(run_dir: Path):
    """Hold an exclusive lock on the run directory itself (``fcntl.flock`` on its descriptor, so
    no file is made) while this process trains there: a second ``train`` in the same directory
    (a ``--resume`` of a run still training, which would interleave its commits with the first's
    and leave checkpoint_best.pt of one and checkpoint_last.pt of the other) is refused
    (:class:`CheckpointError`) before it writes anything. The lock ends with the process however
    it ends; a file system that cannot lock (some network mounts) trains unlocked."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): trains unlocked, as on a file system that cannot lock
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(f"{run_dir} is being trained by another process; let it finish, or stop it (Ctrl-C "
                                  f"or kill -TERM) and then --resume {run_dir}.") from None
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


def _get(config: Config, key: str):
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def train_run(config: Config | None, run_dir: Path, resume: bool = False, progress: bool | None = None,
              log=print, overrides: Config | None = None) -> dict:
    """Train ``config`` in a new ``run_dir``, or with ``resume`` continue the run there
    (its own config.toml rules; ``overrides`` may change only :data:`RESUMABLE_CHANGES`).
    Returns the summary written to ``summary.json``."""
    with flushed_denormals():
        return _train_run(config, Path(run_dir), resume, progress, log, overrides)


def refuse_sweep_dir(run_dir: Path, option: str = "--run-dir") -> None:
    """Refuse to start a run in a sweep's directory (its ``sweep.json`` or ``study.db``): the
    run's files would lie beside the sweep's, whose runs each have a folder of their own (a
    sweep into a run directory is refused likewise, by :func:`~pyro_vae.experiments.sweep.check_sweep_dir`)."""
    from pyro_vae.experiments.sweep import STUDY_DB, SWEEP_FILE

    found = [name for name in (SWEEP_FILE, STUDY_DB) if (Path(run_dir) / name).exists()]
    if found:
        raise CheckpointError(f"{run_dir} is a sweep directory (it holds {' and '.join(found)}), whose runs each "
                              f"have a folder of their own; choose a new {option}.")


#: What training writes into its run directory only once an epoch has committed (with
#: checkpoint_last.pt): a folder that holds any of these but is not a run is someone's own
#: (a new run there is refused). The files written before the first commit (config.toml, the
#: labelled examples, TensorBoard's and MLflow's) are a killed run's that never committed,
#: which a new run there replaces, as starting again after such a crash should.
TRAINING_OUTPUTS = (METRICS, SUMMARY, BEST, "samples.png", "reconstructions.png", "completions.png", "curves.png")


def refuse_overwriting_outputs(run_dir: Path, option: str = "--run-dir") -> None:
    """Refuse to start a new run in a folder that is not a run but holds a file the run would
    write (a user's own ``metrics.csv`` or ``summary.json``, a copied figure): training
    would replace it without a word."""
    found = [name for name in TRAINING_OUTPUTS if (Path(run_dir) / name).exists()]
    if found:
        raise CheckpointError(f"{run_dir} is not a run directory but holds {', '.join(found)}, which a new run there "
                              f"would overwrite; choose a new {option} (or an empty folder).")


def _train_run(config: Config | None, run_dir: Path, resume: bool, progress, log, overrides) -> dict:
    if resume:
        saved = read_run_config(run_dir)
        changed = set()
        if overrides is not None:
            overrides.validate(check_effect=False)  # resolves binarize "auto" as the run did
            _check_resume_changes(saved, overrides)
            changed = {key for key in RESUMABLE_CHANGES if _get(overrides, key) != _get(saved, key)}
            overrides.check_effect(changed)  # e.g. --workers on a data set that is not an image folder
            for key in RESUMABLE_CHANGES:
                section, name = key.split(".")
                setattr(getattr(saved, section), name, getattr(getattr(overrides, section), name))
        config = saved.validate(check_effect=False)
        last = load_checkpoint(run_dir / LAST, map_location="cpu")
        check_own_data(run_dir, last, config)
        # nothing would train, yet config.toml would say it stopped there
        refusal = cut_back(last, config.train.epochs, "--epochs {}", run_dir, config.train.batch_size)
        if refusal is not None:
            raise ConfigError(refusal)
        finished = _finished_summary(run_dir, config.train.epochs, config.train.patience)
        if finished is not None:  # nothing to train: every file is left as it is
            done = finished["epochs"]
            stopped = finished.get("stopped_early") and done < config.train.epochs
            more = (f"--patience above {config.train.patience}" if stopped else f"--epochs above {done}")
            idle = sorted(changed - {"train.epochs"})
            if idle:  # a figure, device or tracking option would act only while training
                given = ", ".join(f"--{key.split('.')[1].replace('_', '-')} {show_value(_get(config, key))}"
                                  for key in idle)
                raise ConfigError(f"{given} {'has' if len(idle) == 1 else 'have'} no effect: {run_dir} has finished its {done} epochs, so "
                                  f"nothing is trained; give {more} to train on, or "
                                  f"draw its figures with `pyro-vae plot {run_dir} --kind samples -o FILE`.")
            why = f"stopped early (--patience {config.train.patience}) after {done} epochs" if stopped else \
                f"has {done} epochs already"
            log(f"nothing to train: {run_dir} {why} and has its summary; give {more} to train on (nothing was written).")
            return {**finished, "nothing_trained": True}  # the CLI then lists no figure as drawn
        _check_resumed_patience(config, run_dir, last["history"], last.get("position") is not None)
    else:
        config.validate()
        if run_dir.exists() and (is_run_dir(run_dir) or (run_dir / LAST).exists()):
            raise CheckpointError(
                f"{run_dir} already holds a training run; continue it with --resume {run_dir} "
                "or choose a new --run-dir."
            )
        refuse_sweep_dir(run_dir, "--run-dir")
        refuse_overwriting_outputs(run_dir)
        if config.model.model == "m1m2" and config.model.m1_run:  # read again by sample, plot, evaluate:
            config.model.m1_run = str(Path(config.model.m1_run).resolve())  # from any folder
    ctx, device_name = init_from_environment(config.train.device)
    try:
        if ctx.active and config.model.model in SEMI_SUPERVISED:  # before the run directory (and M1's codes) is made
            raise ConfigError(f"--model {config.model.model} trains in one process; launch it without torchrun.")
        if ctx.active and config.model.batch_norm:
            # each rank would normalise its rows of a batch by their own mean and variance, on any device: the
            # layers are torch's BatchNorm, never converted to SyncBatchNorm (which runs on GPUs only): not the
            # steps of one process
            raise ConfigError(f"--batch-norm true normalises each of the {ctx.world_size} processes' rows of a batch by "
                              "their own statistics (on the CPU or on GPUs: nothing shares them across processes), so "
                              "they would not take the steps one process takes with the same --batch-size; train it "
                              "in one process (without torchrun).")
        with contextlib.ExitStack() as held:  # the run directory's lock (rank 0), until the run ends
            if resume and ctx.is_main:  # before its data are read: a run still training is refused at once
                held.enter_context(run_dir_lock(run_dir))
            summary = _train(config, run_dir, resume, progress, log, ctx, resolve_device(device_name), held)
        ctx.barrier()  # ranks leave together: none tears down the group while rank 0 still writes
        return summary
    finally:
        shutdown()


def _check_resumed_patience(config: Config, run_dir: Path, history: list[dict], inside_next: bool = False) -> None:
    """Refuse a ``--patience`` given on resume that would have stopped the run before the epochs
    it has begun (``history``'s, and the next one where the run stopped ``inside_next``): the run
    would stop at once, and its summary.json and config.toml would say that patience stopped it,
    after epochs it would never have trained. (A patience that stops it where it is, or later,
    is one it trained under.)"""
    patience = config.train.patience
    if not patience:  # never stops early: nothing to refuse
        return
    if config.model.model in SEMI_SUPERVISED:
        key = "valid_accuracy"  # SemiSupervisedTrainer.selection_key
    else:
        key = {"valid-iwae": "valid_iwae", "valid-loglik": "valid_loglik"}.get(_selection(config.train)["selection"],
                                                                            "valid_elbo")
    criteria = [current_row(row)[key] for row in history]
    begun = len(criteria) + inside_next  # the epochs the run has started
    stop = patience_stop(criteria, patience)
    if stop is not None and stop < begun:
        least = 1 + max(epochs_since_best(criteria[:done]) for done in range(1, begun))
        trained = f"{len(criteria)} epochs" + (f" and part of epoch {begun}" if inside_next else "")
        raise ConfigError(f"--patience {patience} would have stopped {run_dir} after epoch {stop} (no better {key} for "
                          f"{patience} epochs), but it trained {trained}, so its record would name a "
                          f"patience it did not train with; give --patience {least} or more, or 0 (never stop early).")


@contextlib.contextmanager
def _ends_tracker_on_failure(tracker):
    """Within the block, an exception ends ``tracker``'s MLflow run (if any) as KILLED for an
    interrupt, else FAILED, and propagates; the block ends the run itself when it succeeds."""
    try:
        yield
    except BaseException as err:
        if tracker is not None:
            tracker.end("KILLED" if isinstance(err, (TrainingInterrupted, KeyboardInterrupt)) else "FAILED")
        raise


def _finished_summary(run_dir: Path, epochs: int, patience: int = 0) -> dict | None:
    """The run's summary.json when it already holds ``epochs`` (or more) epochs, or stopped
    early by the same ``patience`` (it would stop again at once: the same history), and was
    written after the last checkpoint's epoch (a kill before the summary leaves it to be written)."""
    path = run_dir / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):  # damaged: derived from checkpoint_last.pt, so written again
        return None
    if not isinstance(summary, dict):
        return None
    try:
        read_metrics(run_dir)
    except PyroVAEError:  # missing or damaged: resume writes it again from the checkpoint
        return None
    done = load_checkpoint(run_dir / LAST).get("epoch")
    if done is None or summary.get("epochs") != done:
        return None
    stopped_again = bool(patience) and summary.get("stopped_early") is True and summary.get("patience") == patience
    return summary if done >= epochs or stopped_again else None


def _train(config: Config, run_dir: Path, resume: bool, progress, log, ctx: DistributedContext,
           device: torch.device, held: contextlib.ExitStack) -> dict:
    train_cfg, data_cfg = config.train, config.data
    pyro.set_rng_seed(train_cfg.seed)
    dataset = open_dataset(config, progress=progress, run_dir=run_dir if resume else None)
    # for m1m2: the images, the codes that replace them, and (--m1-codes sample) the codes' spreads
    images, scaler, code_scales = dataset, None, None
    if config.model.model == "m1m2":
        if resume:  # the codes must be those the run began on: M1 as it was then
            check_m1_unchanged(run_dir, Path(config.model.m1_run))
        dataset, scaler, code_scales = m1_codes(config, dataset, device)
    if config.model.likelihood == "gaussian-learned-per-channel" and dataset.image_shape[0] == 1 and not resume:
        raise ConfigError(f"--likelihood gaussian-learned-per-channel learns one sigma per colour channel, and "
                          f"'{dataset.name}' has one channel, so it would be --likelihood gaussian-learned under "
                          "another name; give --likelihood gaussian-learned.")
    model, guide = build_vae(config.model, dataset.image_shape, num_classes(dataset), check_effect=False)
    dataset.check_support(model.likelihood, hint=CLI_SUPPORT_HINTS.get(config.model.likelihood))
    valid = len(dataset.valid)
    if _selection(train_cfg)["selection"] == "valid-loglik" and train_cfg.select_examples > valid:
        raise ConfigError(f"--select-examples {train_cfg.select_examples} is more than the {valid} images of the "
                          f"validation split; give --select-examples {valid} or less (0 scores them all).")
    if model.needs_labels and dataset.train.labels is None:
        raise DataError(f"--model {config.model.model} needs labelled data, but '{dataset.name}' has no labels.")
    # Chosen before the run directory is made: too many --labels leaves no empty directory behind.
    labelled = (balanced_label_subset(dataset.train.labels.cpu(), data_cfg.labels, train_cfg.seed,
                                      num_classes(dataset), dataset.class_names)
                if config.model.model in SEMI_SUPERVISED else None)
    dataset = dataset.to(device)
    model.to(device), guide.to(device)
    initialised_from = None
    if train_cfg.init_from:  # a resumed run has its parameters; its checkpoint says where they began
        initialised_from = (load_checkpoint(run_dir / LAST).get("init_from") if resume else
                            init_from_run(config, model, guide, tuple(dataset.image_shape), device))
    # --pseudo-init says where fresh pseudo-inputs start: those a --init-from source's VampPrior
    # learned are kept, as every other parameter it had (its prior is what is being fine-tuned).
    inherited = initialised_from is not None and PSEUDO_INPUTS not in initialised_from["fresh_parameters"]
    if config.model.prior == "vamp" and config.model.pseudo_init == "data" and not resume:
        if inherited:
            raise ConfigError(f"--pseudo-init data has no effect: the VampPrior of --init-from {train_cfg.init_from} "
                              "has learned pseudo-inputs, which this run keeps; drop --pseudo-init data (in a config file: "
                              "pseudo_init = \"random\", the default).")
        pseudo_inputs_from_data(model.latent_prior, dataset.train, train_cfg.seed)
    settings = TrainSettings(
        epochs=train_cfg.epochs, batch_size=train_cfg.batch_size, learning_rate=train_cfg.learning_rate,
        lr_decay=train_cfg.lr_decay,
        clip_norm=train_cfg.clip_norm, beta=train_cfg.beta, kl_warmup_epochs=train_cfg.kl_warmup_epochs,
        kl_warmup_steps=train_cfg.kl_warmup_steps,
        **_selection(train_cfg),
        analytic_kl=True, patience=train_cfg.patience,
        objective_label=objective_label(config), quantity=quantity_of(config),
    )
    iwae = train_cfg.objective.startswith("iwae")  # k for the IWAE bounds, num_particles for the ELBOs
    objective = make_objective(train_cfg.objective, None if iwae else train_cfg.num_particles,
                               train_cfg.k if iwae else None, train_cfg.elbo_implementation)

    # TensorBoard's writer makes its folder at once: imported first, made after MLflow's start,
    # so that a missing MLflow is refused before anything is written
    writer = _tensorboard_writer_class(run_dir if resume else None) if train_cfg.tensorboard and ctx.is_main else None
    tracker = None
    if train_cfg.mlflow and ctx.is_main:
        from pyro_vae.experiments.tracking import MLflowTracker

        tracker = MLflowTracker.start(run_dir, config)
    # from MLflow's start on, a failure (in setup, training, the summary or the figures) ends its
    # run FAILED (KILLED for an interrupt) instead of leaving it RUNNING
    with _ends_tracker_on_failure(tracker):
        # a resumed run's first TensorBoard log (--tensorboard true turned on at --resume) lacks its earlier epochs
        board_is_new = not (run_dir / "tensorboard").exists()
        board = writer(log_dir=str(run_dir / "tensorboard")) if writer is not None else None

        def on_epoch(trainer: Trainer, row: dict) -> None:  # rank 0 only
            write_metrics(run_dir / METRICS, trainer.state.history)
            every = config.train.figure_every
            figures_now = bool(every) and row["epoch"] % every == 0
            if figures_now and config.train.figures:
                _figures(model, guide, dataset, run_dir, device, objective_name(config), images=scaler is None,
                         quantity=quantity_of(config))
            if board is not None:
                _log_tensorboard(board, row, model, guide, dataset, device,
                                 images=(figures_now or row["epoch"] == 1) and scaler is None)
            if tracker is not None:
                tracker.log_epoch(row)

        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WriteError(f"cannot create the run directory {run_dir} ({err.strerror or err}); choose a --run-dir "
                             "in a writable place.") from None
        if ctx.is_main:
            if not resume:  # (a resumed run holds it already)
                held.enter_context(run_dir_lock(run_dir))
            remove_temporaries(run_dir)  # of a killed earlier attempt
        options = dict(run_dir=run_dir, seed=train_cfg.seed, device=device, on_epoch=on_epoch, progress=progress,
                       log=log, distributed=ctx,
                       extra_state={"config": config.to_dict(), "num_classes": num_classes(dataset),
                                    "class_names": list(dataset.class_names), "image_shape": list(dataset.image_shape)})
        if initialised_from is not None:
            options["extra_state"]["init_from"] = initialised_from
        semi_supervised = config.model.model in SEMI_SUPERVISED
        if board is not None and not semi_supervised and config.model.model != "ae":
            # TensorBoard's scalars are bare numbers: what they bound, and on which data, said once
            fields = kind_fields(config, model.likelihood, dataset.image_shape, 0.0)
            board.add_text("numbers", f"The scalars are in nats per example (train/objective: the "
                                      f"{objective_name(config)}); the bounds and estimates are of "
                                      f"{fields['quantity']}, a {fields['kind']}.")
        if semi_supervised:
            if scaler is not None:
                write_json(run_dir / CODES, {"m1_run": config.model.m1_run, **m1_identity(Path(config.model.m1_run)),
                                             **scaler.to_dict()})
            write_json(run_dir / LABELLED, {"seed": train_cfg.seed, "count": len(labelled),
                                            "per_class": dataset.train.labels.cpu()[labelled].bincount().tolist(),
                                            "indices_into_training_split": labelled.tolist()})
            trainer = SemiSupervisedTrainer(model, guide, dataset, labelled, settings, train_cfg.alpha,
                                            None if train_cfg.labelled_weight == "natural" else 1.0,
                                            code_scales=code_scales, **options)
        else:
            trainer = Trainer(model, guide, objective, dataset, settings, **options)
        if config.train.objective == "iwae-dreg" and config.model.flow == "iaf" and ctx.is_main:
            log(DREG_IAF_NOTE)
        if resume:
            trainer.load(run_dir / LAST)
            trainer.log(f"resuming {run_dir} {trainer.resumes_at()}")
            if ctx.is_main:  # a kill after the last commit may have left these behind it
                trainer.write_best()
                write_metrics(run_dir / METRICS, trainer.state.history)
            if tracker is not None:
                tracker.log_history(trainer.state.history)
            if board is not None:  # their scalars; the grids are of the model as it is now
                # those its record lacks: all where it is new, else an epoch whose checkpoint was
                # written before a kill stopped its logging (metrics.csv is rewritten above)
                logged = set() if board_is_new else _tensorboard_epochs(run_dir / "tensorboard")
                for row in trainer.state.history:
                    if row["epoch"] not in logged:
                        _log_tensorboard(board, row, model, guide, dataset, device, images=False)
        if ctx.is_main:
            atomic_write_text(run_dir / CONFIG, config_text(config))
        started = time.perf_counter()
        try:
            state = trainer.fit()
        finally:
            if board is not None:
                board.close()
        train_seconds = time.perf_counter() - started
        if not ctx.is_main:
            return {}

        best = (trainer.best_checkpoint() if trainer.state.best_parameters is not None
                else load_checkpoint(run_dir / BEST, map_location=device))  # a run begun before LAST held it
        model.load_state_dict(best["model"]), guide.load_state_dict(best["guide"])
        model.eval(), guide.eval()
        if semi_supervised:
            results = _semi_supervised_results(config, dataset, labelled, best, trainer, device,
                                               images.to(device) if scaler is not None else None)
        elif config.model.model == "ae":  # no ELBO: the reconstruction term is all it has
            test = evaluate_elbo(model, guide, dataset.test.images, analytic_kl=True, labels=dataset.test.labels)
            results = {"selection": "best validation reconstruction log p(x | code)",
                       "best_valid_criterion": best["best_valid_elbo"], "test_reconstruction": test["reconstruction"],
                       "test_reconstruction_stderr": test["reconstruction_stderr"],  # over the test images
                       "unit": "nats per example", **reconstruction_kind(config, model.likelihood)}
        else:
            test = evaluate_elbo(model, guide, dataset.test.images, analytic_kl=True, labels=dataset.test.labels)
            results = {
                "selection": trainer.describe_selection(),
                "best_valid_criterion": best["best_valid_elbo"],
                "test_elbo": test["elbo"],
                "test_elbo_stderr": test["elbo_stderr"],  # over the test images
                "test_reconstruction": test["reconstruction"],
                "test_reconstruction_stderr": test["reconstruction_stderr"],
                "test_kl": test["kl"],
                "test_kl_stderr": test["kl_stderr"],
                "unit": "nats per example",
                # The test ELBO's kind and bits/dim (a lower bound, as the ELBO is).
                **kind_fields(config, model.likelihood, dataset.image_shape, test["elbo"], test["elbo_stderr"]),
            }
        # M1+M2's "images" are codes: its image figures would need M1's decoder (the curves alone are drawn)
        figures = ([] if not train_cfg.figures else
                   _figures(model, guide, dataset, run_dir, device, objective_name(config), images=scaler is None,
                            quantity=quantity_of(config)))
        summary = {
            **run_settings(config),
            "epochs": state.epoch,
            "best_epoch": best["epoch"],
            "stopped_early": state.epoch < train_cfg.epochs,
            **results,
            "train_objective_name": objective_name(config),  # what metrics.csv's train_objective holds
            "best_epoch_metrics": current_row(next(row for row in best["history"] if row["epoch"] == best["epoch"])),
            **({"init_from": initialised_from} if initialised_from is not None else {}),
            "train_seconds_this_session": train_seconds,
            "seconds_per_epoch": [row["seconds"] for row in state.history],
            "figures": [str(p) for p in figures],
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "versions": {"torch": torch.__version__, "pyro": pyro.__version__, "python": platform.python_version()},
            "device": str(device),
            "processes": ctx.world_size,
        }
        write_json(run_dir / SUMMARY, summary)
        if tracker is not None:
            tracker.finish(summary, figures)
        return summary


#: What M1+M2's M2 models its codes with, whatever model.likelihood says (build.build_vae).
M1M2_LIKELIHOOD = "gaussian-learned-per-pixel on M1's codes"
#: What M2, M1+M2 and the ADGM train, whatever train.objective says (semisupervised.objective_name).
SEMI_SUPERVISED_OBJECTIVE = "m2"
#: What a plain autoencoder (``--model ae``) trains, whatever train.objective says: its
#: reconstruction term log p(x | code), which has no prior and no KL (objective_label).
AUTOENCODER_OBJECTIVE = "reconstruction"


def settings_in_effect(config: Config) -> dict:
    """The run's settings as it uses them, ``{name: value}`` flat (names as in config.toml's
    tables): the value used where the model sets its own (M1+M2's likelihood on M1's codes,
    :data:`M1M2_LIKELIHOOD`; the M2 objective of M2, M1+M2 and the ADGM,
    :data:`SEMI_SUPERVISED_OBJECTIVE`; the autoencoder's reconstruction term,
    :data:`AUTOENCODER_OBJECTIVE`), and None for ``k`` where no importance-weighted bound
    uses it (it is recorded at its default all the same)."""
    from pyro_vae.config import unused_options

    unused = unused_options(config)
    settings = {}
    for section, table in config.to_dict().items():
        for key, value in table.items():
            settings[key] = None if f"{section}.{key}" == "train.k" and "train.k" in unused else value
    if config.model.model == "m1m2":
        settings["likelihood"] = M1M2_LIKELIHOOD
    if config.model.model in SEMI_SUPERVISED:
        settings["objective"] = SEMI_SUPERVISED_OBJECTIVE
    if config.model.model == "ae":  # it trains log p(x | code), not the ELBO train.objective names
        settings["objective"] = AUTOENCODER_OBJECTIVE
    return settings


def config_text(config: Config) -> str:
    """config.toml's text: the configuration, under a comment naming each setting recorded
    there that the run does not use as written (:func:`settings_in_effect`)."""
    effective = settings_in_effect(config)
    notes = []
    for section, table in config.to_dict().items():
        for key, value in table.items():
            if effective[key] != value:
                used = "not used" if effective[key] is None else f"not used: the run uses {effective[key]!r}"
                notes.append(f"# {section}.{key} = {value!r} is {used}")
    header = "# Settings recorded at their defaults that this run does not use as written:\n" if notes else ""
    return header + "".join(f"{line}\n" for line in notes) + ("\n" if notes else "") + config.dumps()


def run_settings(config: Config) -> dict:
    """What a result needs to be read alone: the data, the model and the objective
    (``k`` only for an importance-weighted objective; the likelihood and objective as used,
    :func:`settings_in_effect`)."""
    data, model, train = config.data, config.model, config.train
    effective = settings_in_effect(config)
    return {
        "dataset": data.dataset, "train_limit": data.train_limit, "binarize": data.binarize,
        "model": model.model, "likelihood": effective["likelihood"], "latent_dim": model.latent_dim,
        "network": model.network,
        **({"hidden_dims": model.hidden_dims} if model.network == "mlp" else {"conv_channels": model.conv_channels}),
        **({"top_latent_dim": model.top_latent_dim, "top_hidden_dims": model.top_hidden_dims}
           if model.model == "hvae" else {}),
        "objective": effective["objective"], "k": train.k if train.objective.startswith("iwae") else None,
        "beta": train.beta, "seed": train.seed, "max_epochs": train.epochs, "patience": train.patience,
    }


def _selection(train_cfg) -> dict:
    """TrainSettings' selection fields from ``--select-by`` (auto: the validation IWAE
    bound with the training K for the iwae objectives, else the validation ELBO)."""
    rule = train_cfg.select_by
    if rule == "auto":
        rule = "valid-iwae" if train_cfg.objective.startswith("iwae") else "valid-elbo"
    k = {"valid-iwae": train_cfg.k, "valid-loglik": train_cfg.select_k}.get(rule, 0)
    return {"selection": rule, "selection_k": k, "selection_examples": train_cfg.select_examples,
            "selection_seed": train_cfg.seed}


#: Said when a run trains an IAF guide with DReG: correct, but each step pays L sequential passes.
DREG_IAF_NOTE = ("note: --objective iwae-dreg evaluates log q(z | x) at a given z with the guide's parameters "
                 "detached, which inverts every IAF step by one network pass per latent dimension: a step costs "
                 "about 20x that of --objective iwae (784-300-300-40 gated MLP, 4 IAF steps, K=5, batch 100); "
                 "use --objective iwae with --flow iaf unless you need DReG's gradient.")

#: [model] options in which a --init-from run may differ from its source: it may add a prior
#: with parameters, or flow steps, to the source's networks (the new parts start afresh).
EXTENDING_OPTIONS = ("prior", "prior_components", "pseudo_inputs", "pseudo_init", "flow", "flow_steps")


def init_from_run(config: Config, model, guide, image_shape: tuple, device) -> dict:
    """--init-from RUN_DIR: load the best checkpoint of that run into ``model`` and ``guide``
    (built from this run's config). The two runs must have the same [model] options and image
    shape, except that this run may add parts the source lacks (a VampPrior or mixture prior,
    flow steps: :data:`EXTENDING_OPTIONS`), which keep their fresh initialisation; every
    parameter of the source must have its counterpart of the same shape. Returns what the
    summary records, with the names of the parameters that started afresh."""
    source = Path(config.train.init_from)
    if not is_run_dir(source):
        raise ConfigError(f"--init-from {source} is not a run directory (no {CONFIG} and {LAST}); give the "
                          "directory of a finished training run.")
    run = open_run(source, "best", device=str(device))
    theirs = run.config
    differ = [name for name, value in dataclasses.asdict(config.model).items()
              if getattr(theirs.model, name) != value and name not in EXTENDING_OPTIONS]
    if differ:
        name = differ[0]
        raise ConfigError(f"--init-from {source} has --{name.replace('_', '-')} {show_value(getattr(theirs.model, name))}, "
                          f"this run {show_value(getattr(config.model, name))}: give the same [model] options as that run "
                          "(only a prior or flow may be added).")
    shape = tuple(run.checkpoint.get("image_shape", image_shape))
    if shape != image_shape:
        raise ConfigError(f"--init-from {source} was trained on images of shape {shape}, this data set's are "
                          f"{image_shape}: give a run on the same data set.")
    fresh = []
    for part, mine, given in (("model", model, run.model), ("guide", guide, run.guide)):
        try:
            result = mine.load_state_dict(given.state_dict(), strict=False)
        except RuntimeError as err:  # a parameter of another shape, e.g. another number of classes
            if "latent_prior." in str(err) and theirs.model.prior == config.model.prior:  # the prior's size differs
                size = "pseudo_inputs" if theirs.model.prior == "vamp" else "prior_components"
                flag = f"--{size.replace('_', '-')}"
                raise ConfigError(f"--init-from {source} has {flag} {getattr(theirs.model, size)}, this run "
                                  f"{getattr(config.model, size)}: give {flag} {getattr(theirs.model, size)} "
                                  "(the prior it learned is kept; only a prior the source lacks starts afresh).") from None
            raise ConfigError(f"--init-from {source}: its parameters do not fit this run's model "
                              f"({str(err).splitlines()[-1].strip()}); give a run on the same data set.") from None
        if result.unexpected_keys:  # the source has a part this run lacks, e.g. flow steps
            raise ConfigError(f"--init-from {source}: its {part} parameter '{result.unexpected_keys[0]}' has no "
                              f"counterpart here (it has --prior {theirs.model.prior} --flow {theirs.model.flow}); "
                              "this run may add a prior or flow to its source, not drop one.")
        fresh += [f"{part}.{key}" for key in result.missing_keys]
    return {"run": str(source), "epoch": run.checkpoint.get("epoch"), "step": run.checkpoint.get("step"),
            "fresh_parameters": fresh}


#: The VampPrior's pseudo-inputs as :func:`init_from_run` names a parameter that started afresh.
PSEUDO_INPUTS = "model.latent_prior.raw_pseudo_inputs"


def pseudo_inputs_from_data(prior, train: Split, seed: int) -> None:
    """--pseudo-init data: the VampPrior's K pseudo-inputs start as K distinct training
    images, drawn by ``seed``."""
    count = prior.raw_pseudo_inputs.shape[0]
    if count > len(train):
        raise ConfigError(f"--pseudo-inputs {count} is more than the {len(train)} training images that "
                          "--pseudo-init data draws them from; ask for fewer pseudo-inputs.")
    rows = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:count]
    prior.set_pseudo_inputs(train.take(rows).images)


def m1_identity(m1_dir: Path) -> dict:
    """Which M1 model an M1+M2 run's codes come from: the SHA-256 of the M1 run's
    ``checkpoint_best.pt`` (the model :func:`m1_codes` encodes with), for m1_codes.json."""
    import hashlib

    return {"m1_checkpoint": BEST, "m1_checkpoint_sha256": hashlib.sha256((m1_dir / BEST).read_bytes()).hexdigest()}


def check_m1_unchanged(run_dir: Path, m1_dir: Path) -> None:
    """Refuse to go on with an M1+M2 run (resume, label fidelity) whose M1 run's best model
    is no longer the one it was trained on (M1 resumed or retrained since): its codes, and
    the images decoded through M1, would come from another model. Runs recorded before the
    checksum are not checked."""
    path = run_dir / CODES
    if not path.is_file():
        return
    recorded = read_json(path, f"train the M1+M2 run {run_dir} again").get("m1_checkpoint_sha256")
    if recorded is not None and (m1_dir / BEST).is_file() and m1_identity(m1_dir)["m1_checkpoint_sha256"] != recorded:
        raise DataError(f"the M1 run {m1_dir} has changed since the M1+M2 run {run_dir} was trained on its codes (its "
                        f"{BEST} is not the one recorded in {CODES}); put that M1 run back, or train the M1+M2 "
                        "run again.")


def m1_codes(config: Config, images: ImageDataset, device) -> tuple[ImageDataset, CodeScaler, torch.Tensor | None]:
    """--model m1m2: the data set's images replaced by the standardized codes of the M1 run
    (a ``--model vae`` run on the same data set), their scaler, and with ``--m1-codes sample``
    the standard deviations of the standardized training codes ``[N, 1, 1, D]`` (else None)."""
    m1_dir = Path(config.model.m1_run)
    if not is_run_dir(m1_dir):
        raise ConfigError(f"--m1-run {m1_dir} is not a run directory (no config.toml and checkpoint); give the "
                          "directory of a --model vae run.")
    m1 = open_run(m1_dir, device=str(device))
    if m1.config.model.model != "vae":
        raise ConfigError(f"--m1-run {m1_dir} is a --model {m1.config.model.model} run; M1 is a --model vae run.")
    if m1.config.model.flow != "none":  # posterior_means reads the encoder's Normal: before the flow steps
        raise ConfigError(f"--m1-run {m1_dir} has a --flow {m1.config.model.flow} guide, whose mean E[z | x] (M2's "
                          "codes) has no closed form, and its encoder's is the mean before the flow steps; give a "
                          "--model vae run without --flow.")
    # the codes are M1's encodings of this run's images: they must be the images M1 learned from
    # idx and image-folder data are the files in --data-dir (a named data set's files are checked against their
    # SHA-256 wherever they are found), an image folder's images as large and coloured as they were loaded
    own = {"idx": ("data_dir",), "image-folder": ("data_dir", "image_size", "image_mode")}.get(config.data.dataset, ())
    for key in ("dataset", "train_limit", "binarize", *own):
        if getattr(m1.config.data, key) != getattr(config.data, key):
            raise ConfigError(f"--m1-run {m1_dir} was trained with {key} {getattr(m1.config.data, key)!r}, this run "
                              f"has {getattr(config.data, key)!r}: give the same --{key.replace('_', '-')}.")
    m1.guide.eval()
    images = images.to(device)
    codes, scaler = code_dataset(m1.guide, images)
    scales = training_code_scales(m1.guide, images, scaler) if config.model.m1_codes == "sample" else None
    return codes, scaler, scales


def _semi_supervised_results(config: Config, dataset: ImageDataset, labelled, best: dict, trainer, device,
                             images: ImageDataset | None = None) -> dict:
    """Test accuracy of M2's best model (by validation accuracy) beside the supervised-only
    baseline: the same classifier network, initialised alike, trained on the same labels,
    with its own learning rate chosen by validation accuracy. For M1+M2 (``images`` given,
    ``dataset`` holding codes) the baseline reads the pixels (an MLP of the same hidden
    sizes, supervised only), and a second one, the same classifier on M1's codes
    ("M1 + classifier"), tells what M2 adds to M1's features."""
    from pyro_vae.inference.judge import binomial_stderr
    from pyro_vae.inference.semisupervised import classification_accuracy

    best_row = next(row for row in best["history"] if row["epoch"] == best["epoch"])
    # The best model (by validation accuracy) is loaded; the test split is scored once, here.
    test_accuracy = classification_accuracy(trainer.guide, dataset.test.images, dataset.test.labels)
    budget = dict(epochs=trainer.state.epoch, steps_per_epoch=trainer.steps_per_epoch(),
                  batch_size=config.train.batch_size, seed=config.train.seed,
                  lr_decay=config.train.lr_decay, clip_norm=config.train.clip_norm)  # M2's schedule too
    pyro.set_rng_seed(config.train.seed)
    # The ADGM's classifier also reads a; its baseline is M2's pixel classifier, built (and
    # initialised) exactly as for an M2 run of the same seed, so both share one baseline.
    pixel_model = dataclasses.replace(config.model, model="m2") if config.model.model == "adgm" else config.model
    _, fresh = build_vae(pixel_model, dataset.image_shape, num_classes(dataset), check_effect=False)
    results = {"selection": "best validation accuracy of q(y | x)", "labels": len(labelled),
               "valid_accuracy": best_row["valid_accuracy"],
               "valid_accuracy_stderr": binomial_stderr(best_row["valid_accuracy"], len(dataset.valid)),
               "test_accuracy": test_accuracy,
               "test_accuracy_stderr": binomial_stderr(test_accuracy, len(dataset.test))}
    if images is None:
        baseline = tuned_supervised_baseline(lambda: copy.deepcopy(fresh.classifier).to(device), dataset, labelled,
                                             **budget)
    else:
        pyro.set_rng_seed(config.train.seed)
        pixels = nn_classifier(images.image_shape, config.model.hidden_dims, num_classes(images),
                               config.model.activation)
        baseline = tuned_supervised_baseline(lambda: copy.deepcopy(pixels).to(device), images, labelled, **budget)
        on_codes = tuned_supervised_baseline(lambda: copy.deepcopy(fresh.classifier).to(device), dataset, labelled,
                                             code_scales=trainer.code_scales, **budget)  # drawn as M2's codes are
        results.update(_with_accuracy_stderrs("codes_baseline_", on_codes, dataset))
    results.update(_with_accuracy_stderrs("baseline_", baseline, dataset))
    return results


def _with_accuracy_stderrs(prefix: str, result: dict, dataset: ImageDataset) -> dict:
    """A baseline's ``result`` under ``prefix``, each of its accuracies (validation, test) with its
    binomial standard error over that split's images, as M2's own are given."""
    from pyro_vae.inference.judge import binomial_stderr

    fields = {f"{prefix}{key}": value for key, value in result.items()}
    for split in ("valid", "test"):
        fields[f"{prefix}{split}_accuracy_stderr"] = binomial_stderr(result[f"{split}_accuracy"],
                                                                    len(dataset.split(split)))
    return fields


def _tensorboard_writer_class(run_dir: Path | None = None):
    """TensorBoard's ``SummaryWriter`` class (imported, nothing written), or one sentence;
    ``run_dir``: a resumed run, named as the cause where its own config.toml asks for
    TensorBoard (its user gave no --tensorboard), with the way to go on without it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        install = "pip install 'pyro-vae[tensorboard]'"
        if run_dir is not None and (Path(run_dir) / CONFIG).is_file() and read_run_config(run_dir).train.tensorboard:
            raise ConfigError(f"{run_dir} logs to TensorBoard (tensorboard = true in its {CONFIG}), but the "
                              f"tensorboard package is not installed: {install}, or resume it with --tensorboard "
                              "false.") from None
        raise ConfigError(f"--tensorboard needs the tensorboard package: {install}.") from None
    return SummaryWriter


def _tensorboard_epochs(folder: Path) -> set[int]:
    """The epochs whose scalars a run's TensorBoard record holds (``valid/elbo``, or whatever
    scalar it logged at that step)."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={SCALARS: 0}).Reload()
    return {event.step for tag in events.Tags()[SCALARS] for event in events.Scalars(tag)}


@torch.no_grad()
def _log_tensorboard(board, row: dict, model, guide, dataset: ImageDataset, device, images: bool) -> None:
    """Scalars every epoch (nats per example); sample and reconstruction grids when asked (``images``:
    not for M1+M2, whose data are M1's codes): a labelled model's samples one row of 8 per class and its
    reconstructions decoded with the images' labels, as its figures draw them; quadrant completion's
    grid the originals, the given quadrants and a completion of each (the conditional models' grids
    were left out without a word)."""
    from pyro_vae.plots import image_grid

    for key, value in row.items():
        if key not in ("epoch", "step"):
            board.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
    if not images:
        board.flush()
        return
    x, classes = dataset.test.images[:16], getattr(model, "num_classes", 0)
    if hasattr(model, "complete"):  # quadrant completion: no free samples
        board.add_image("completions", image_grid(torch.cat([x, model.condition(x), model.complete(x, 1)[0]]), 16),
                        row["epoch"], dataformats="HWC")
    elif classes:  # z ~ p(z | y), one row per class; the test images' own labels for the reconstructions
        y = torch.arange(classes, device=device).repeat_interleave(8)
        board.add_image("samples", image_grid(model.decode_mean(model.sample_prior(y), y), 8), row["epoch"],
                        dataformats="HWC")
        labels = dataset.test.labels[:16].to(device)
        pairs = torch.cat([x, model.decode_mean(guide.encode(x, labels)[0], labels)])
        board.add_image("reconstructions", image_grid(pairs, 16), row["epoch"], dataformats="HWC")
    else:
        codes = model.sample_prior(64) if hasattr(model, "sample_prior") else torch.randn(64, model.latent_dim)
        samples = model.decode_mean(codes.to(device))
        board.add_image("samples", image_grid(samples, 8), row["epoch"], dataformats="HWC")
        pairs = torch.cat([x, model.decode_mean(guide.encode(x)[0])])
        board.add_image("reconstructions", image_grid(pairs, 16), row["epoch"], dataformats="HWC")
    board.flush()


def _figures(model, guide, dataset: ImageDataset, run_dir: Path, device, objective: str | None = None,
             images: bool = True, quantity: str = "log p(x)") -> list[Path]:
    """A run's figures: samples and reconstructions (completions for quadrant) unless
    ``images`` is false (M1+M2, whose data are M1's codes, not images), and the curves
    (``objective`` and ``quantity``: :func:`~pyro_vae.plots.plot_curves`)."""
    from pyro_vae.plots import plot_completions, plot_curves, plot_reconstructions, plot_samples

    if not images:
        figures = []
    elif hasattr(model, "complete"):  # quadrant completion draws completions, not free samples
        figures = [plot_completions(model, dataset.test.head(10).images, run_dir / "completions.png")]
    else:
        test = dataset.test.head(32)
        figures = [plot_samples(model, run_dir / "samples.png", device=device, class_names=dataset.class_names),
                   plot_reconstructions(model, guide, test.images, run_dir / "reconstructions.png",
                                        labels=test.labels if getattr(model, "num_classes", 0) else None,
                                        what=f"the first {len(test)} test images")]
    if (run_dir / METRICS).exists():
        figures.append(plot_curves(read_metrics(run_dir), run_dir / "curves.png", objective, quantity))
    return figures


def evaluate_run(run: Run, split: str = "test", limit: int = 0, subset: str = "random", seed: int = 0) -> dict:
    """The run's ELBO on ``split`` (``limit`` of its examples if given, see
    :func:`evaluation_examples`), with its parts, nats per example."""
    part, chosen, _ = evaluation_examples(run, split, limit, subset, seed)
    images = part.images  # evaluate_elbo reads it batch by batch (byte images stay bytes until then)
    # A support is a per-pixel property: bytes are checked by their distinct values.
    run.model.likelihood.check_support(images.distinct_values() if isinstance(images, ByteImages) else images,
                                       f"the {split} split", hint=CLI_SUPPORT_HINTS.get(run.config.model.likelihood))
    result = evaluate_elbo(run.model, run.guide, images, analytic_kl=True, labels=part.labels)
    # The seed draws the Monte Carlo reconstruction term's codes (and any --limit subset): a number's input.
    if not getattr(run.model, "has_marginal_likelihood", True):  # an autoencoder: no ELBO, no KL
        return {**chosen, "seed": seed, "examples": len(images), "unit": "nats per example",
                "reconstruction": result["reconstruction"], "reconstruction_stderr": result["reconstruction_stderr"],
                **reconstruction_kind(run.config, run.model.likelihood)}
    return {**chosen, "seed": seed, "examples": len(images), "unit": "nats per example", **result,
            **kind_fields(run.config, run.model.likelihood, part.images.shape[1:], result["elbo"],
                          result["elbo_stderr"])}


def binary_data(config: Config) -> bool:
    """Whether the run's images are 0/1 (binarized, or binarized MNIST) rather than 8-bit."""
    return config.data.binarize not in ("none", "auto") or config.data.dataset == "binarized-mnist"


def binarization(config: Config) -> str:
    """How the images were binarized, for summary.json and loglik.json."""
    return "binarized-mnist (fixed)" if config.data.dataset == "binarized-mnist" else config.data.binarize


def kind_fields(config: Config, likelihood, image_shape, mean: float, stderr: float = 0.0,
                kind: str | None = None) -> dict:
    """likelihood, binarize, kind, quantity, dimensions and bits/dim of a log-likelihood
    ``mean`` (nats per example) of the run's images; the kind defaults to that of an
    undequantized score. The dimensions are the pixel values scored: for quadrant completion
    the missing ones alone (log p(x_m | x_g)), with the image's own in ``image_dimensions``."""
    from pyro_vae.inference.kinds import describe, dimensions, number_kind

    kind = kind or number_kind(likelihood.data_kind, binary_data(config))
    scored = scored_dimensions(config, image_shape)
    fields = describe(mean, stderr, image_shape, kind, config.model.likelihood, binarization(config), scored)
    fields["quantity"] = quantity_of(config)
    if scored != dimensions(image_shape):
        fields["image_dimensions"] = dimensions(image_shape)
    return fields


def reconstruction_kind(config: Config, likelihood) -> dict:
    """An autoencoder's reconstruction log p(x | code): its kind of number (a mass on binary or
    8-bit data, or a density: numbers of different kinds cannot be ranked) and its quantity."""
    from pyro_vae.inference.kinds import RECONSTRUCTION, number_kind

    return {"kind": number_kind(likelihood.data_kind, binary_data(config)), "quantity": RECONSTRUCTION}


def quantity_of(config: Config) -> str:
    """What the run's ELBO bounds and its ``evaluate --k`` estimates (:func:`~pyro_vae.inference.kinds.quantity`)."""
    from pyro_vae.inference.kinds import quantity

    return quantity(config.model.model, config.model.given_quadrants)


def scored_dimensions(config: Config, image_shape) -> int:
    """The pixel values a run's log-likelihood sums over: all of an image's, or for quadrant
    completion those of the missing quadrants alone."""
    from pyro_vae.inference.kinds import dimensions

    if config.model.model != "quadrant":
        return dimensions(image_shape)
    from pyro_vae.models.quadrant import quadrant_mask

    return int((~quadrant_mask(tuple(int(n) for n in image_shape), config.model.given_quadrants)).sum())


def scored_pixels(config: Config, image_shape):
    """Bool ``[C, H, W]``, true on the pixel values a run's log-likelihood scores, where that is
    not all of them (quadrant completion's missing quadrants); None where it is all."""
    if config.model.model != "quadrant":
        return None
    from pyro_vae.models.quadrant import quadrant_mask

    return ~quadrant_mask(tuple(int(n) for n in image_shape), config.model.given_quadrants)


#: How the examples of ``evaluate --limit N`` are chosen.
SUBSETS = ("random", "first")
#: ``evaluate --k`` warns when the mean effective sample size is below this share of K.
ESS_WARNING_SHARE = 0.05


def estimate_name(config: Config) -> str:
    """What the importance-sampling estimate of a run's model is: log p(x | y) for the
    conditional VAE (the label given), log p(x_m | x_g) for quadrant completion, else
    log p(x) (M2's label is summed out); :func:`quantity_of` says which quadrants are given."""
    from pyro_vae.inference.kinds import short_quantity

    return short_quantity(quantity_of(config))


def evaluation_examples(run: Run, split: str, limit: int = 0, subset: str = "random",
                        seed: int = 0, strict: bool = True) -> tuple:
    """The examples ``evaluate`` scores, a record of how they were chosen (for the JSON) and
    their indices into the split ``[n]``: split ``split`` as the model
    is scored on it (:meth:`ImageDataset.scored_split`: binary where training binarized
    dynamically), all of it, or with ``limit`` its first ``limit`` examples (``subset =
    "first"``) or ``limit`` drawn without replacement with ``seed`` (``"random"``, in index
    order). The first images of a file are not a fair sample of it (on MNIST the first
    thousand test digits are harder than the rest). ``strict``: a ``limit`` above the split's
    size is refused (else it means all of it)."""
    if subset not in SUBSETS:
        raise ConfigError(f"unknown subset '{subset}' (choose from {', '.join(SUBSETS)}).")
    part = run.dataset().scored_split(split)
    if strict and limit > len(part):
        raise ConfigError(f"--limit {limit} is more than the {len(part)} images of the {split} split; give "
                          f"--limit {len(part)} or less (or leave it out to score them all).")
    rows = torch.arange(len(part))
    record: dict = {"split": split, "subset": "all"}
    if limit and limit < len(part):
        if subset == "first":
            rows = rows[:limit]
            part = part.head(limit)
            record = {"split": split, "subset": "first", "limit": limit}
        else:
            rows = torch.randperm(len(part), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
            part = part.take(rows)
            record = {"split": split, "subset": "random", "limit": limit, "subset_seed": seed}
    return part, record, rows


def ess_warning(estimate, share: float = ESS_WARNING_SHARE) -> str:
    """A sentence when the mean effective sample size of ``estimate`` is below ``share`` of
    the weights it is over (K, or C * K where C classes are summed out: ``estimate.draws``;
    the log-weights are then dominated by a few draws and the bound far from converged), else ''."""
    mean_ess = estimate.ess.mean().item()
    draws = getattr(estimate, "draws", None) or estimate.k
    if mean_ess >= share * draws:
        return ""
    of = f"K={estimate.k}" if draws == estimate.k else f"{draws} weights (K={estimate.k} for each of {draws // estimate.k} classes)"
    return (f"warning: the mean effective sample size is {mean_ess:.1f} of {of} "
            # two decimals: with one, a share of 4.99% read "5.0%, below 5%"
            f"({100 * mean_ess / draws:.2f}%, below {100 * share:g}%), so the estimate is far from converged "
            "and a larger --k would likely raise it.")


class ProgressReport:
    """Progress of a long computation over ``total`` examples: a tqdm bar where ``stream``
    is a terminal, else a line every ``every`` seconds (a log file shows a bar's redraws
    as garbage). Call it with (examples done, examples in this pass); a call whose count
    falls back starts a new pass (M2 scores every class in turn)."""

    def __init__(self, what: str, total: int, stream=None, every: float = 30.0):
        import sys

        self.what, self.total, self.every = what, total, every
        self.stream = stream or sys.stderr
        self.started = self.last_line = time.perf_counter()
        self.offset = self.previous = 0
        self.bar = None
        if self.stream.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=what, unit="example", leave=False, file=self.stream)

    def __call__(self, done: int, of: int) -> None:
        if done < self.previous:
            self.offset += of
        self.previous = done
        count = self.offset + done
        if self.bar is not None:
            self.bar.update(count - self.bar.n)
            return
        now = time.perf_counter()
        if now - self.last_line >= self.every:
            self.last_line = now
            print(f"{self.what}: {count} of {self.total} examples, {now - self.started:.0f} s", file=self.stream,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


FIGURE_KINDS = ("samples", "reconstructions", "latent", "manifold", "interpolate", "arithmetic",
                "prior-check", "curves", "style", "completions", "compare")
#: Figures that draw several runs side by side (``pyro-vae plot RUN_A RUN_B --kind ...``).
MULTI_RUN_KINDS = ("compare", "latent")
#: The figures that draw codes from N(0, I) or compare codes with it: not for --model hvae.
N01_CODE_KINDS = ("manifold", "prior-check", "compare")
#: Of those, the ones that decode N(0, I) codes as the model's own: not for --prior mog or vamp
#: either (prior-check draws its reference from a learned prior).
N01_DRAW_KINDS = ("manifold", "compare")


#: The figures of a --model m1m2 run: its curves, and images decoded through its M1 run.
M1M2_KINDS = ("samples", "style", "curves")


def label_generator(run: Run):
    """The labelled run as a generator of images (:class:`~pyro_vae.inference.fidelity.LabelModel`),
    for its label fidelity and its samples and style grid: the CVAE, M2 and the ADGM decode pixels
    themselves; M1+M2 decodes its codes through the decoder of the M1 run it was trained on, with
    the code scaler it recorded (:func:`~pyro_vae.inference.codes.stacked_label_model`)."""
    from pyro_vae.inference.codes import stacked_label_model
    from pyro_vae.inference.fidelity import label_model

    if run.config.model.model != "m1m2":
        return label_model(run.model, run.guide)
    if not (run.run_dir / CODES).is_file():
        raise DataError(f"this M1+M2 run lacks its {CODES} (the M1 run and the codes' scaling it decodes "
                        "through); train the M1+M2 run again.")
    record = read_json(run.run_dir / CODES, "train the M1+M2 run again")
    m1_dir = _recorded_m1_run(run.run_dir, Path(record["m1_run"]))
    if not is_run_dir(m1_dir):
        raise DataError(f"this M1+M2 run decodes through its M1 run {m1_dir}, which is not a run directory from "
                        f"here; run the command from where the run was trained, or put the M1 run back.")
    check_m1_unchanged(run.run_dir, m1_dir)
    m1 = open_run(m1_dir, device=str(run.device))
    scaler = CodeScaler.from_dict(record).to(run.device)
    return stacked_label_model(m1.model, m1.guide, scaler, run.model, run.guide)


def _recorded_m1_run(run_dir: Path, m1_dir: Path) -> Path:
    """The M1 run an M1+M2 run recorded: as recorded, or, for a relative path recorded before
    paths were made absolute (relative to the folder training was started from), the first
    folder above the run directory in which it names a run. Which M1 it is, is checked by its
    checkpoint's SHA-256 (:func:`check_m1_unchanged`), so a wrong guess is refused, not used."""
    if is_run_dir(m1_dir) or m1_dir.is_absolute():
        return m1_dir
    for folder in Path(run_dir).resolve().parents:
        if is_run_dir(folder / m1_dir):
            return folder / m1_dir
    return m1_dir


def _learned_prior(run: Run) -> str | None:
    """Why ``run``'s decoder does not read codes from N(0, I) by its prior (--prior mog or
    vamp), for the refusal of the :data:`N01_DRAW_KINDS`; None for the standard prior."""
    prior = run.config.model.prior
    if prior == "standard":
        return None
    return f"{run.run_dir} has --prior {prior}, whose codes are not drawn from N(0, I)"
#: Figures drawn for the conditional VAE (the others read codes of an unconditional guide).
CONDITIONAL_KINDS = ("samples", "reconstructions", "curves", "style")  # for cvae and m2


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of the run's ``metrics.csv`` as the training history holds them: numbers,
    today's column names (an old run's ``train_elbo`` is ``train_objective``), and no entry
    for an empty cell (a column added by a newer version, in the rows of the epochs trained
    before a ``--resume`` with it)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise PyroVAEError(f"{run_dir} has no {METRICS} yet; train at least one epoch first.")
    try:
        with open(path, newline="") as handle:
            return [current_row({k: float(v) for k, v in row.items() if v != ""}) for row in csv.DictReader(handle)]
    except (ValueError, TypeError, csv.Error, UnicodeDecodeError) as err:  # a cell not a number, a ragged row
        raise DataError(f"{path} is damaged ({err}); it is derived from checkpoint_last.pt: pyro-vae train "
                        f"--resume {run_dir} writes it again.") from None


def objective_label(config: Config) -> str:
    """The bound the run's objective estimates: "ELBO" or "IWAE bound K=5" (an autoencoder's,
    which has no KL term, is its reconstruction term)."""
    if config.model.model == "ae":
        return "reconstruction log p(x | code)"
    return f"IWAE bound K={config.train.k}" if config.train.objective.startswith("iwae") else "ELBO"


def objective_name(config: Config) -> str:
    """What the run's ``train_objective`` (metrics.csv) holds, in words."""
    train_cfg = config.train
    if config.model.model in SEMI_SUPERVISED:
        from pyro_vae.inference.semisupervised import objective_name as semi_supervised_name

        return semi_supervised_name(train_cfg.alpha, train_cfg.beta, auxiliary=config.model.model == "adgm")
    return TrainSettings(epochs=train_cfg.epochs, beta=train_cfg.beta, kl_warmup_epochs=train_cfg.kl_warmup_epochs,
                         kl_warmup_steps=train_cfg.kl_warmup_steps, objective_label=objective_label(config),
                         quantity=quantity_of(config)).describe_objective()


def _attribute_mask(dataset: ImageDataset, split, attribute: str, attribute_file: str | None) -> tuple:
    """Which images of ``split`` have the attribute, and its display name: from a 0/1 file,
    a boolean attribute of the data (CelebA's ``Smiling``), or a class (name or number)."""
    import numpy as np

    n = len(split)
    if attribute_file:
        try:
            values = np.load(attribute_file) if attribute_file.endswith(".npy") else np.loadtxt(attribute_file)
        except (OSError, ValueError) as err:
            raise PyroVAEError(f"cannot read attribute labels from {attribute_file} ({err}).") from None
        values = np.asarray(values)
        # a table of several columns was flattened row by row into one long list of labels
        if values.dtype.kind not in "biuf" or values.ndim > 2 or (values.ndim == 2 and min(values.shape) > 1):
            raise PyroVAEError(f"{attribute_file} must hold one 0 or 1 per test image, as one column or row of "
                               f"numbers, not {values.dtype.name} values of shape {values.shape}.")
        values = torch.as_tensor(values.reshape(-1))
        if len(values) < n or not torch.isin(values, torch.tensor([0.0, 1.0], dtype=values.dtype)).all():
            raise PyroVAEError(f"{attribute_file} must hold a 0 or 1 for each of the first {n} test images.")
        return values[:n].bool(), Path(attribute_file).stem
    folded = attribute.casefold()  # names match in any case: "smiling" is CelebA's "Smiling"
    attribute_names = [a.casefold() for a in dataset.attribute_names]
    if folded in attribute_names:
        index = attribute_names.index(folded)
        return split.attributes[:, index].cpu(), dataset.attribute_names[index]
    names, labels = dataset.class_names, split.labels
    if labels is None:
        known = f" (its attributes: {', '.join(dataset.attribute_names)})" if dataset.attribute_names else ""
        raise PyroVAEError(f"this data set has no attribute or class '{attribute}'{known}; name one of those, or "
                           "give boolean labels with --attribute-file FILE (a 0/1 per test image).")
    if folded in [n.casefold() for n in names]:
        index = [n.casefold() for n in names].index(folded)
    elif attribute.isdigit() and int(attribute) < max(len(names), int(labels.max()) + 1):
        index = int(attribute)
    else:
        raise PyroVAEError(f"unknown attribute '{attribute}'; give a class name ({', '.join(names)}) or number.")
    return labels.cpu() == index, names[index] if index < len(names) else str(index)


def _image_by_name(dataset: ImageDataset, name: str) -> torch.Tensor:
    """The image whose file name (relative to the folder, or just its base name) is ``name``; a
    training image of a dynamically binarized data set drawn once with a fixed seed, as the
    validation and test images are (its grey levels are no input a Bernoulli model reads)."""
    found = [(split_name, i, file_name) for split_name in ("test", "valid", "train")
             for i, file_name in enumerate(dataset.split(split_name).names)
             if file_name == name or Path(file_name).name == name]
    exact = [hit for hit in found if hit[2] == name]
    if len(exact) == 1 or len(found) == 1:
        split_name, i, _ = (exact or found)[0]
        image = dataset.split(split_name).images[i]
        if split_name == "train" and dataset.binarize == "dynamic":
            from pyro_vae.data.datasets import TRAIN_EVAL_BINARIZATION_SEED, binarize_batch

            seeded = torch.Generator().manual_seed(TRAIN_EVAL_BINARIZATION_SEED + i)
            image = binarize_batch(image.cpu(), seeded).to(image.device)
        return image
    if found:  # class sub-folders often reuse file names (cat/1.jpg, dog/1.jpg): the first was taken
        raise PyroVAEError(f"'{name}' names {len(found)} images ({', '.join(hit[2] for hit in found[:3])}"
                           f"{', ...' if len(found) > 3 else ''}); give the one you mean by its path in the folder.")
    if not dataset.train.names:
        raise PyroVAEError("--image-a/--image-b name files of an image folder; for this data set use "
                           "--index-a and --index-b (test image numbers).")
    raise PyroVAEError(f"no image named '{name}' in the data set; give a file name from its folder "
                       f"(e.g. {dataset.test.names[0]}).")


def run_class_names(run: Run) -> tuple[str, ...]:
    """The names of a run's classes without loading its data: as its checkpoint recorded them
    (an image folder's sub-folders), else the named data set's (runs from before the record)."""
    return tuple(run.checkpoint.get("class_names") or class_names(run.config.data.dataset))


def model_title(run: Run) -> str:
    """How a run is named in a side-by-side figure: its folder and what it is."""
    what = {"ae": "autoencoder", "vae": "VAE"}.get(run.config.model.model, run.config.model.model)
    return f"{run.run_dir.name} ({what}, {run.model.latent_dim}-D code)"


#: The side-by-side figure's generation number: log (1/K) sum_k p(x | z_k), z_k ~ N(0, I), on
#: this many test images with this many draws.
GENERATION_IMAGES, GENERATION_DRAWS = 1000, 1000


def _mean_and_stderr(values: torch.Tensor) -> tuple[float, float, int]:
    """Mean, standard error of the mean (over the values: images) and their number."""
    values = values.detach().double().cpu()
    n = len(values)
    return values.mean().item(), (values.std().item() / math.sqrt(n)) if n > 1 else float("nan"), n


def mean_plus_minus(mean: float, stderr: float) -> str:
    """``mean ± stderr`` with one decimal, or as many as a standard error below 0.1 needs to show
    its first significant digit (0.04 read "0.0" with one decimal); both to the same place."""
    decimals = 1
    if math.isfinite(stderr) and 0 < stderr < 0.1:  # at 10^-d or above: d decimals never round it to 0
        decimals = -math.floor(math.log10(stderr))
    return f"{mean:.{decimals}f} ± {stderr:.{decimals}f}"


#: The first test images a figure reads when no --limit is given.
FIGURE_IMAGES = 5000


def figure_from_runs(runs: list[Run], kind: str, output: Path, n: int = 36, limit: int | None = None,
                     seed: int = 0) -> Path:
    """Draw ``kind`` (``compare`` or ``latent``) for several unconditional runs side by side:
    their codes of the first ``limit`` test images of the first run's data set (None:
    :data:`FIGURE_IMAGES`), and for
    ``compare`` ``n`` draws z ~ N(0, I) through each decoder. Each title gives the run's mean
    reconstruction log p(x | code) over those images and its mean log (1/K) sum_k p(x | z_k),
    z_k ~ N(0, I), over the first :data:`GENERATION_IMAGES` (nats per image), each ± its
    standard error over the images, with their number, K and the kind of number (a mass on
    binary or 8-bit data, or a density: :func:`~pyro_vae.inference.kinds.number_kind`)."""
    from pyro_vae import plots
    from pyro_vae.inference.kinds import number_kind
    from pyro_vae.inference.reconstruction import reconstruction_log_likelihood, sampled_code_log_likelihood

    if kind not in MULTI_RUN_KINDS:
        raise PyroVAEError(f"the '{kind}' figure draws one run; give one RUN_DIR, or choose "
                           f"{' or '.join(MULTI_RUN_KINDS)} to draw several side by side.")
    plots.check_figure_output(output)  # before anything is drawn (a run's own files included)
    for run in runs:
        if getattr(run.model, "hierarchical", False):
            raise PyroVAEError(f"{run.run_dir} is a --model hvae run, whose code z1 does not have the prior "
                               "N(0, I) these figures draw from; draw its figures one run at a time.")
        if kind == "compare" and _learned_prior(run):
            raise PyroVAEError(f"the 'compare' figure decodes draws z ~ N(0, I) as each run's samples, but "
                               f"{_learned_prior(run)}; compare its codes with --kind latent, or draw its "
                               "samples one run at a time.")
        if getattr(run.model, "num_classes", 0) or hasattr(run.model, "complete"):
            raise PyroVAEError(f"{run.run_dir} is a conditional model; the side-by-side figures are for "
                               "unconditional ones (--model vae or ae).")
    shapes = {tuple(run.checkpoint.get("image_shape", (1, 28, 28))) for run in runs}
    if len(shapes) > 1 or len({run.config.data.dataset for run in runs}) > 1:
        raise PyroVAEError("the runs were trained on different data; compare runs of one data set.")
    if len({binarization(run.config) for run in runs}) > 1:  # every run is scored on the first run's images
        raise PyroVAEError("the runs' images are not binarized alike (" + ", ".join(
            f"{run.run_dir}: {binarization(run.config)}" for run in runs) + "), and each run's numbers would be of "
            "the first run's images (grey levels given to a Bernoulli, 0/1 pixels to an 8-bit likelihood); compare "
            "runs of one binarization.")
    dataset = runs[0].dataset()
    test = dataset.test.head(FIGURE_IMAGES if limit is None else limit)
    images = as_tensor(test.images)
    entries = []
    for run in runs:
        x = images.to(run.device)
        recon = _mean_and_stderr(reconstruction_log_likelihood(run.model, run.guide, x))
        # a learned prior's own draws (the compare kind refuses those runs; their codes are drawn side by side):
        # a title's "z_k ~ N(0, I)" estimated no log p(x) of a --prior vamp or mog run
        prior = run.model.latent_prior if _learned_prior(run) else None
        sampled = _mean_and_stderr(sampled_code_log_likelihood(run.model, x[:GENERATION_IMAGES], k=GENERATION_DRAWS,
                                                               prior=prior))
        drawn_from = f"p(z) (its --prior {run.config.model.prior})" if prior is not None else "N(0, I)"
        number = number_kind(run.model.likelihood.data_kind, binary_data(run.config))  # not `kind`: the figure's
        images_seen = (f"{recon[2]} test images" if recon[2] == sampled[2] else
                       f"{recon[2]} test images, the second over their first {sampled[2]}")
        entries.append((f"{model_title(run)}\n"
                        f"reconstruction log p(x | code): {mean_plus_minus(*recon[:2])} nats/image\n"
                        f"log (1/K) sum_k p(x | z_k), z_k ~ {drawn_from}, K={GENERATION_DRAWS}: "
                        f"{mean_plus_minus(*sampled[:2])} nats/image\n"
                        f"(mean ± s.e. over {images_seen};\n{number})", run.model, run.guide))  # 2 lines: the width
    return plots.plot_compare(entries, images, test.labels, output, dataset.class_names,
                              samples=n if kind == "compare" else 0, seed=seed)


def figure_from_run(run: Run, kind: str, output: Path, n: int = 64, limit: int | None = None, attribute: str = "",
                    attribute_file: str | None = None, index_a: int = 0, index_b: int = 1,
                    label: int | None = None, image_a: str = "", image_b: str = "", seed: int = 0) -> Path:
    """Draw figure ``kind`` (one of :data:`FIGURE_KINDS`) for a reopened run into ``output``;
    ``limit``: the first test images the figure reads (None: 5000; refused where none are read);
    ``seed``: the draws z ~ N(0, I) of ``compare`` (the other figures draw from torch's global
    generator, which the caller seeds)."""
    from pyro_vae import plots

    plots.check_figure_output(output)  # before anything is drawn (the run's own files included)
    stacked = run.config.model.model == "m1m2"
    if stacked and kind not in M1M2_KINDS:  # its decoder's "images" are M1's codes
        raise PyroVAEError(f"the '{kind}' figure would draw this --model m1m2 run's decoder, whose outputs are M1's "
                           f"codes, not images; `pyro-vae plot {run.run_dir} --kind samples` (or --kind style) draws "
                           f"images decoded through M1, --kind curves its training curves, and `pyro-vae evaluate "
                           f"{run.run_dir} --label-fidelity` judges images decoded through M1.")
    if hasattr(run.model, "complete") and kind not in ("completions", "curves"):
        raise PyroVAEError(f"the '{kind}' figure is not drawn for a --model quadrant run, which completes given "
                           f"quadrants; use `pyro-vae plot {run.run_dir} --kind completions` (or --kind curves).")
    if kind == "completions" and not hasattr(run.model, "complete"):
        raise PyroVAEError(f"the 'completions' figure is for --model quadrant, and {run.run_dir} is a --model "
                           f"{run.config.model.model} run; choose another --kind, e.g. samples.")
    if getattr(run.model, "hierarchical", False) and kind in N01_CODE_KINDS:
        raise PyroVAEError(f"the '{kind}' figure assumes the decoder's code has the prior N(0, I), but this "
                           "--model hvae run's z1 has the prior p(z1) = E_p(z2)[p(z1 | z2)]; choose samples, "
                           "reconstructions, latent, interpolate, arithmetic or curves.")
    if kind == "prior-check" and run.config.model.flow != "none":
        # it reads q(z | x) per dimension as the Normal (loc, scale) of guide.encode, which for a flow
        # guide is the flowed base mean with the base scale: neither its draws nor its KL
        raise PyroVAEError(f"the 'prior-check' figure reads q(z | x) as a diagonal Normal, and {run.run_dir}'s "
                           f"--flow {run.config.model.flow} guide is not one (its per-dimension KL has no closed "
                           "form); choose samples, reconstructions, latent, interpolate, arithmetic or curves.")
    if kind in N01_DRAW_KINDS and _learned_prior(run):
        raise PyroVAEError(f"the '{kind}' figure decodes codes of N(0, I) as the model's own, but "
                           f"{_learned_prior(run)}; choose samples (drawn from its prior), prior-check, "
                           "reconstructions, latent, interpolate, arithmetic or curves.")
    if kind in MULTI_RUN_KINDS and kind != "latent":
        return figure_from_runs([run], kind, output, n=min(n, 64), limit=limit, seed=seed)
    if kind == "completions":
        return plots.plot_completions(run.model, run.dataset().test.head(min(n, 10)).images, output)
    conditional = bool(getattr(run.model, "num_classes", 0))
    if conditional and kind not in CONDITIONAL_KINDS:
        raise PyroVAEError(f"the '{kind}' figure is for the unconditional VAE; for --model "
                           f"{run.config.model.model} choose {', '.join(CONDITIONAL_KINDS)}.")
    if kind == "style" and not conditional:
        raise PyroVAEError(f"the 'style' figure needs a model with a label (--model cvae, m2, adgm or m1m2), and "
                           f"{run.run_dir} is a --model {run.config.model.model} run; choose another --kind.")
    if label is not None and not conditional:
        raise PyroVAEError(f"--label draws one class of a conditional model (--model cvae, m2, adgm or m1m2); this run's "
                           f"model is {run.config.model.model}, so drop --label.")
    if label is not None and not 0 <= label < run.model.num_classes:
        raise PyroVAEError(f"--label {label} is not a class of this model, which has {run.model.num_classes} "
                           f"classes: give a number from 0 to {run.model.num_classes - 1}.")
    if kind == "curves":
        return plots.plot_curves(read_metrics(run.run_dir), output, objective_name(run.config), quantity_of(run.config))
    if kind == "samples":  # M1+M2: E[x | z_2, y] = M1's decoder mean at M2's mean code
        return plots.plot_samples(label_generator(run) if stacked else run.model, output, n=n, device=run.device,
                                  label=label, class_names=run_class_names(run))
    autoencoder = not getattr(run.model, "has_marginal_likelihood", True)
    if kind == "prior-check" and autoencoder:
        raise PyroVAEError("the prior check compares the codes with the prior N(0, I), and a plain autoencoder "
                           "has none; look at its codes with --kind latent or manifold instead.")
    if kind == "manifold" and not autoencoder:
        if limit is not None:
            raise PyroVAEError(f"--limit has no effect on a VAE's manifold, which decodes the prior's quantiles "
                               "without reading images (it spans an autoencoder's codes of the first --limit test "
                               "images); drop it.")
        try:
            return plots.plot_manifold(run.model, output, device=run.device)
        except ValueError as err:
            raise PyroVAEError(f"{err}.") from None
    dataset = run.dataset()
    test = dataset.test.head(FIGURE_IMAGES if limit is None else limit)
    if kind == "manifold":  # an autoencoder has no prior quantiles: span its codes instead
        try:
            return plots.plot_manifold(run.model, output, device=run.device,
                                       codes=plots._codes(run.guide, as_tensor(test.images)))
        except ValueError as err:
            raise PyroVAEError(f"{err}.") from None
    if kind == "reconstructions":
        shown = test.head(min(n, 32))
        return plots.plot_reconstructions(run.model, run.guide, shown.images, output,
                                          labels=shown.labels if getattr(run.model, "num_classes", 0) else None,
                                          what=f"the first {len(shown)} test images")
    if kind == "style":
        shown = test.head(min(n, 10))
        return plots.plot_style_transfer(label_generator(run), shown.images, shown.labels, output,
                                         dataset.class_names)
    if kind == "latent":
        return plots.plot_latent(run.guide, test.images, test.labels, output, dataset.class_names, "test images")
    if kind == "prior-check":
        return plots.plot_prior_check(run.guide, test.images, output,
                                      prior=getattr(run.model, "latent_prior", None))
    if kind == "interpolate":
        if image_a or image_b:
            if not (image_a and image_b):
                raise PyroVAEError("give both --image-a and --image-b (two file names) to interpolate between.")
            x_a, x_b = _image_by_name(dataset, image_a), _image_by_name(dataset, image_b)
            names = (image_a, image_b)  # found in any split: not "test images"
        elif not (0 <= index_a < len(dataset.test) and 0 <= index_b < len(dataset.test)):
            raise PyroVAEError(f"--index-a and --index-b must be test image numbers below {len(dataset.test)}.")
        else:
            x_a, x_b = dataset.test.images[index_a], dataset.test.images[index_b]
            names = (f"test image {index_a}", f"test image {index_b}")
        return plots.plot_interpolation(run.model, run.guide, x_a, x_b, output, names=names)
    if kind == "arithmetic":
        if not attribute and not attribute_file:
            raise PyroVAEError("latent arithmetic needs --attribute CLASS (a class name or number) "
                               "or --attribute-file FILE.")
        if attribute and attribute_file:  # each picks the images: one would be ignored
            raise PyroVAEError(f"--attribute {attribute} and --attribute-file {attribute_file} each say which images "
                               "have the attribute; give one of them (the file's name names its attribute).")
        mask, name = _attribute_mask(dataset, test, attribute, attribute_file)
        try:
            examples = test.images[~mask.to(test.images.device)][:4]
            return plots.plot_arithmetic(run.model, run.guide, test.images, mask.to(test.images.device),
                                         examples, output, name)
        except ValueError as err:
            with_it = int(mask.sum())
            counts = (f" (of the {len(test)} test images read, {with_it} have it and {len(test) - with_it} not)"
                      if with_it in (0, len(test)) else "")
            fix = "; give a larger --limit" if counts and limit is not None else ""
            raise PyroVAEError(f"{err}{counts}{fix}.") from None
    raise PyroVAEError(f"unknown figure kind '{kind}'; choose from {', '.join(FIGURE_KINDS)}.")
