"""``fit(model, guide, data)``: the training entry point for Python users.

It trains any Pyro model/guide pair, the library's ``PyroModule``s or the function-style
programs of Pyro's tutorials (``pyro.module("decoder", net)`` inside ``def model(x)``), with
the loop the CLI uses (:class:`~pyro_vae.inference.train.Trainer`), and with a ``run_dir``
writes what a CLI run writes: ``checkpoint_last.pt`` and ``checkpoint_best.pt`` every epoch,
``metrics.csv``, ``summary.json`` and figures (``curves.png``; ``samples.png`` and
``reconstructions.png`` for models with ``decode_mean`` and guides with ``encode``), and
``resume=True`` continues such a run exactly.
"""

from __future__ import annotations

import contextlib
import os
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyro
import torch

from pyro_vae.config import TrainConfig
from pyro_vae.data.datasets import ImageDataset, Split
from pyro_vae.errors import CheckpointError, ConfigError, DataError
from pyro_vae.inference.checkpoint import BEST, LAST, atomic_write_text, load_checkpoint
from pyro_vae.inference.objectives import make_objective
from pyro_vae.inference.randomness import random_state_kept
from pyro_vae.inference.train import Trainer, TrainSettings, cut_back, evaluate_elbo


@dataclass
class FitResult:
    """What :func:`fit` did: one row per epoch (``history``, as in ``metrics.csv``; bounds in
    nats per example; ``train_objective`` is the epoch's mean of the objective trained, named
    by ``train_objective_name``, e.g. "IWAE bound K=5"; each validation mean has its standard
    error over the validation examples, ``valid_elbo_stderr``, ...), the epoch chosen by
    validation, the files written."""

    history: list[dict]
    best_epoch: int
    best_valid_criterion: float
    run_dir: Path | None = None
    train_objective_name: str = ""
    summary: dict = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)


def as_dataset(data) -> ImageDataset:
    """``data`` as the trainer takes it: an :class:`ImageDataset` as it is, or a tuple
    ``(train, valid)`` or ``(train, valid, test)`` of float tensors ``[N, ...]`` (examples
    along the first dimension, used as given: binarize them first for a Bernoulli model)."""
    if isinstance(data, ImageDataset):
        return data.check_binarize()
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise DataError("fit needs an ImageDataset (load_dataset) or a tuple (train, valid[, test]) of tensors, "
                        f"not {type(data).__name__}.")
    names = ("train", "valid", "test")
    for name, x in zip(names, data):
        if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() < 2 or len(x) == 0:
            raise DataError(f"the {name} data must be a non-empty float tensor [N, ...], not "
                            f"{getattr(x, 'dtype', type(x).__name__)} of shape {tuple(getattr(x, 'shape', ()))}.")
        if x.shape[1:] != data[0].shape[1:]:
            raise DataError(f"the {name} examples have shape {tuple(x.shape[1:])}, unlike the training "
                            f"examples' {tuple(data[0].shape[1:])}.")
        if not torch.isfinite(x).all():
            raise DataError(f"the {name} data contain NaN or infinite values; clean or drop those examples.")
    splits = [Split(x) for x in data] + ([Split(data[1])] if len(data) == 2 else [])
    return ImageDataset("tensors", *splits, binarize="none")


def _keeps_callers_random_state(function: Callable) -> Callable:
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with random_state_kept():
            return function(*args, **kwargs)
    return wrapper


@_keeps_callers_random_state
def fit(model: Callable, guide: Callable, data, *, objective="elbo", epochs: int = 10, batch_size: int = 128,
        learning_rate: float = 1e-3, k: int | None = None, num_particles: int | None = None, beta: float = 1.0,
        kl_warmup_epochs: int = 0, lr_decay: float = 1.0, clip_norm: float = 0.0,
        run_dir: str | Path | None = None, resume: bool = False, seed: int = 0, device: str = "cpu",
        config=None, figures: bool = True, progress: bool | None = False,
        log: Callable[[str], None] = print) -> FitResult:
    """Train ``model`` and ``guide`` on ``data`` by stochastic gradient ascent (Adam) on
    ``objective`` for ``epochs`` epochs in all.

    ``data``: an :class:`ImageDataset` (``load_dataset``; a dynamically binarized training
    split is redrawn in every batch, as in the CLI) or ``(train, valid[, test])`` tensors
    (without a test split the summary reports no test numbers).
    ``objective``: ``"elbo"``, ``"analytic-kl"`` (with ``num_particles``, default 1),
    ``"iwae"`` or ``"iwae-dreg"`` (the same bound with the doubly reparameterized gradient; with
    ``k``, default 5; the best epoch is then chosen by the validation IWAE bound; ``k`` or
    ``num_particles`` given where it has no effect is refused) or any object with
    ``differentiable_loss(model, guide, x)``. The four named objectives differentiate through the
    guide's draws, so they refuse a guide latent that cannot be reparameterized (pass
    ``pyro.infer.Trace_ELBO()`` or ``TraceEnum_ELBO()`` for one), and ``"iwae-dreg"`` a guide that
    is not a ``torch.nn.Module``. Each epoch the validation ELBO (closed-form KL
    where torch has it) is computed and logged.

    Function-style programs keep their parameters in Pyro's param store: call
    ``pyro.clear_param_store()`` before building their modules, as Pyro's tutorials do.

    With ``run_dir`` the run's files are written there (a ``config`` (:class:`Config`) of a
    library model is saved as ``config.toml``, its [train] table set to fit's own arguments, which
    are what trains; so ``pyro-vae plot``/``evaluate`` can reopen the run; a config without a
    ``run_dir`` is refused; the checkpoint records which data trained, ``"tensors"`` or the
    ImageDataset's name, and the CLI's commands that load the run's data refuse a run whose data
    are not the ones its [data] table names: score those in Python on the same tensors) and the
    best epoch's parameters are loaded into ``model`` and ``guide`` at the end;
    ``resume=True`` continues the run in ``run_dir`` from its last checkpoint (parameters,
    optimizer, RNG states) up to ``epochs``. Without ``run_dir`` nothing is written, the
    last epoch's parameters stay, and the result has its ``history`` but no ``summary`` (no
    test numbers: those are of the best epoch, which a ``run_dir`` keeps). A fresh run draws from ``seed`` (``pyro.set_rng_seed``), and
    the caller's random states (torch, CUDA, NumPy, Python's ``random``) are restored when fit
    returns or raises, as they were before the call.
    ``device`` (``"cpu"``, ``"cuda"`` or ``"cuda:N"``) is checked as the CLI's ``--device``: a
    malformed name or a GPU this machine lacks is a ConfigError before anything is written.
    """
    from pyro_vae.config import coerce, field_types
    from pyro_vae.runs import resolve_device

    # Numbers checked as the CLI checks its flags (beta -1, epochs 0, k 0, seed -1 trained on or
    # failed deep inside; epochs=1.5 trained 2 epochs, k=2.5 was an "unknown objective"): of
    # [train]'s types, then in range, one sentence naming the argument, before anything is read or written.
    kinds = field_types(TrainConfig)
    numbers = {name: coerce(name, value, kinds[name], "fit") if value is not None else None for name, value in
               {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "lr_decay": lr_decay,
                "clip_norm": clip_norm, "k": k, "num_particles": num_particles, "beta": beta,
                "kl_warmup_epochs": kl_warmup_epochs, "seed": seed}.items()}
    epochs, batch_size, learning_rate, lr_decay, clip_norm, k, num_particles, beta, kl_warmup_epochs, seed = \
        numbers.values()
    TrainConfig(**{**numbers, "k": 5 if k is None else k,
                   "num_particles": 1 if num_particles is None else num_particles}).validate()
    # as the CLI's --device: a malformed name or a GPU this machine lacks, before anything is written
    device = resolve_device(str(device) if isinstance(device, torch.device) else device, python=True)
    processes = os.environ.get("WORLD_SIZE", "1")
    if processes.isdigit() and int(processes) > 1:  # each rank trained the whole data alone, all in one run_dir
        raise ConfigError(f"fit trains in one process, but torchrun started {processes}, which would each train the "
                          "whole data set alone (and write one run_dir together); run the script without torchrun, "
                          "or train data-parallel with `torchrun ... -m pyro_vae.cli train`.")
    from pyro_vae.models import M2Model

    if isinstance(model, M2Model):  # its guide's y is discrete: the fast ELBO failed at the first step
        raise ConfigError(f"fit does not train a semi-supervised {type(model).__name__} (its label y is discrete, and it "
                          "trains on labelled and unlabelled images with its own objective and selection by accuracy); "
                          "train it with `pyro-vae train --model m2` (or adgm, m1m2), or in Python with "
                          "pyro_vae.inference.semisupervised.SemiSupervisedTrainer.")
    dataset = as_dataset(data)
    from pyro_vae.inference.loglik import check_examples_fit_programs

    for split in ("train", "valid", "test"):  # float64 valid data failed after an epoch of training
        check_examples_fit_programs(model, guide, getattr(dataset, split).images[:1], f"the {split} examples")
    run_dir = Path(run_dir) if run_dir is not None else None
    if resume and (run_dir is None or not (run_dir / LAST).is_file()):
        raise CheckpointError(f"resume=True needs the run_dir of an earlier fit holding {LAST}; "
                              f"{run_dir} has none.")
    if not resume and run_dir is not None and (run_dir / LAST).exists():
        raise CheckpointError(f"{run_dir} already holds a training run; continue it with resume=True "
                              "or choose a new run_dir.")
    if not resume and run_dir is not None:
        from pyro_vae.runs import refuse_overwriting_outputs, refuse_sweep_dir

        refuse_sweep_dir(run_dir, "run_dir")
        refuse_overwriting_outputs(run_dir, "run_dir")
    likelihood = getattr(model, "likelihood", None)
    if likelihood is not None and hasattr(likelihood, "check_support"):
        dataset.check_support(likelihood)  # the same check as the CLI's, advice in Python terms
    dataset = dataset.to(device)
    for program in (model, guide):
        if isinstance(program, torch.nn.Module):
            program.to(device)
    name = objective if isinstance(objective, str) else type(objective).__name__
    iwae = isinstance(objective, str) and name.startswith("iwae")
    unused = {"k": (k, not iwae, "k is the IWAE bound's samples, for objective='iwae'"),
              "num_particles": (num_particles, iwae or not isinstance(objective, str),
                                "num_particles is the ELBO's, for objective='elbo' or 'analytic-kl'")}
    for option, (value, refused, why) in unused.items():
        if value is not None and refused:  # as the CLI refuses an option that has no effect
            raise ConfigError(f"{option}={value} has no effect with objective={name!r}; drop it ({why}).")
    if beta == 0 and kl_warmup_epochs:  # as the CLI refuses --kl-warmup-epochs with --beta 0
        raise ConfigError(f"kl_warmup_epochs={kl_warmup_epochs} has no effect with beta=0 (it ramps the KL weight up "
                          "to beta, so the weight stays 0 throughout); drop it or give beta above 0.")
    autoencoder = not getattr(model, "has_marginal_likelihood", True)  # --model ae: no prior, no KL
    if autoencoder:  # as the CLI refuses them for --model ae
        why = {"beta": (beta, beta != 1, "it weighs a KL term"),
               "kl_warmup_epochs": (kl_warmup_epochs, kl_warmup_epochs != 0, "it warms up a KL term"),
               "objective": (name, name in ("analytic-kl", "iwae", "iwae-dreg"), "its KL in closed form, or its K "
                             "importance weights, which are all equal for a point-mass code; use objective='elbo'")}
        for option, (value, given, reason) in why.items():
            if given:
                raise ConfigError(f"{option}={value!r} has no effect on a plain autoencoder, which has no prior and "
                                  f"no KL term ({reason}); drop it.")
    from pyro_vae.inference.programs import evaluation_mode
    from pyro_vae.inference.train import label_kwargs

    # Two examples as the trainer draws them (0/1 pixels under dynamic binarization) try the programs before
    # anything is written: in evaluation mode and with the random streams kept, so no batch-norm statistic
    # and no draw of the run moves.
    first_two = label_kwargs(model, dataset.train.labels, slice(0, 2))
    with torch.no_grad(), evaluation_mode(model, guide), random_state_kept():
        two = next(dataset.batches("train", batch_size=2, shuffle=False))
        if objective in ("elbo", "analytic-kl", "iwae", "iwae-dreg"):  # the first step failed, past the run_dir
            _check_objective_trains_guide(name, model, guide, two, first_two)
        if len(two) > 1:  # a program without a data plate trained, then failed validating
            from pyro_vae.inference.objectives import elbo_terms
            from pyro_vae.inference.weights import check_one_value_per_example

            check_one_value_per_example(elbo_terms(model, guide, two, **first_two).elbo, 2)
    if name == "iwae-dreg" and isinstance(guide, torch.nn.Module):  # as the CLI refuses it for a planar flow
        from pyro_vae.inference.objectives import check_dreg_guide

        check_dreg_guide(model, guide, dataset.train.images[:2].float(), **first_two)
    if name == "analytic-kl":  # as the CLI refuses it for a mixture prior or a flow guide
        from pyro_vae.inference.objectives import sites_without_closed_form_kl

        missing = sites_without_closed_form_kl(model, guide, dataset.train.images[:2].float(), **first_two)
        if missing:
            raise ConfigError(f"objective='analytic-kl' needs KL(q || p) in closed form, which this model's prior and "
                              f"guide do not have at {', '.join(repr(n) for n in missing)} (it would be Monte Carlo "
                              "there); use objective='elbo' or 'iwae'.")
    k, num_particles = 5 if k is None else k, 1 if num_particles is None else num_particles
    # what the log line and train_objective_name call the objective's value
    label = ("reconstruction log p(x | code)" if autoencoder else
             (f"IWAE bound K={k}" if iwae else "ELBO") if isinstance(objective, str) else f"{name}'s objective")
    if isinstance(objective, str):
        try:
            objective = make_objective(objective, None if iwae else num_particles, k if iwae else None)
        except ValueError:
            from pyro_vae.config import OBJECTIVES

            raise ConfigError(f"unknown objective '{name}'; choose {', '.join(OBJECTIVES[:-1])} or {OBJECTIVES[-1]}, "
                              "or pass an object with differentiable_loss(model, guide, x).") from None
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, lr_decay=lr_decay,
                             clip_norm=clip_norm, beta=beta, kl_warmup_epochs=kl_warmup_epochs, analytic_kl=True,
                             selection_k=k if name.startswith("iwae") else 0,
                             objective_label=label)
    # what a resumed run must be given again to continue the same run (checked on resume)
    recorded = {"objective": name, "k": k if iwae else None, "num_particles": None if iwae else num_particles,
                "batch_size": batch_size, "learning_rate": learning_rate, "lr_decay": lr_decay,
                "clip_norm": clip_norm, "beta": beta, "kl_warmup_epochs": kl_warmup_epochs, "seed": seed}
    if config is not None:
        if run_dir is None:
            raise ConfigError("config is saved as the run's config.toml, which needs a run_dir: give run_dir, or "
                              "drop config (fit's arguments set the training).")
        _check_config_builds(config, model, guide, dataset)
        config = _as_trained(config, recorded, epochs, str(device), figures)
    digest = data_digest(dataset) if run_dir is not None else None
    if resume:
        _check_resumable(run_dir / LAST, recorded, config, digest, epochs)
    else:
        pyro.set_rng_seed(seed)
    # which data trained: the config's [data] table may name other data than those given, and
    # `pyro-vae evaluate`/`plot`/`train --resume` would load those (runs.check_own_data refuses)
    extra = {"image_shape": list(dataset.image_shape), "fit_settings": recorded,
             "fit_data": dataset.name if isinstance(data, ImageDataset) else "tensors", "fit_data_digest": digest}
    if config is not None:
        extra["config"] = config.to_dict()
        from pyro_vae.runs import num_classes

        extra["num_classes"] = num_classes(dataset)
        extra["class_names"] = list(dataset.class_names)  # what `pyro-vae sample` names its rows by

    def on_epoch(trainer: Trainer, row: dict) -> None:
        from pyro_vae.runs import METRICS, write_metrics

        write_metrics(run_dir / METRICS, trainer.state.history)

    trainer = Trainer(model, guide, objective, dataset, settings, run_dir=run_dir, seed=seed, device=device,
                      extra_state=extra, on_epoch=on_epoch if run_dir is not None else None, progress=progress,
                      log=log, continue_with=f"fit(..., run_dir={str(run_dir)!r}, resume=True)")
    # the run directory's lock, held until fit returns or raises
    with contextlib.ExitStack() as held:
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            from pyro_vae.runs import run_dir_lock

            held.enter_context(run_dir_lock(run_dir))  # as the CLI's: a second fit or train there is refused
            if config is not None:
                from pyro_vae.runs import CONFIG

                atomic_write_text(run_dir / CONFIG, config.dumps())
        if resume:
            trainer.load(run_dir / LAST)
            log(f"resuming {run_dir} {trainer.resumes_at()}")
            # as the CLI's resume: a kill after the last commit may have left these behind it
            from pyro_vae.runs import METRICS, write_metrics

            trainer.write_best()
            write_metrics(run_dir / METRICS, trainer.state.history)
        started = time.perf_counter()
        state = trainer.fit()
        seconds = time.perf_counter() - started
        best_epoch = max(state.history, key=_criterion)["epoch"] if state.history else 0
        result = FitResult(list(state.history), best_epoch, state.best_valid_elbo, run_dir,
                           settings.describe_objective())
        if run_dir is None:
            return result
        best = load_checkpoint(run_dir / BEST, map_location=device)
        trainer.model.load_state_dict(best["model"]), trainer.guide.load_state_dict(best["guide"])
        trainer.model.eval(), trainer.guide.eval()
        result.best_epoch = best["epoch"]
        # (train, valid) tensors have no test split: as_dataset stands the validation split in for it
        has_test = not (isinstance(data, (tuple, list)) and len(data) == 2)
        result.summary = _summary(trainer, dataset, best, name, seconds, config, has_test)
        result.summary["train_objective_name"] = result.train_objective_name  # what train_objective holds
        if figures:
            result.figures = _figures(model, guide, dataset, run_dir, device, result.train_objective_name)
        result.summary["figures"] = [str(p) for p in result.figures]
        from pyro_vae.runs import SUMMARY, write_json

        write_json(run_dir / SUMMARY, result.summary)
        return result


def _check_objective_trains_guide(name: str, model, guide, two: torch.Tensor, labels: dict) -> None:
    """Refuse a guide that the objective ``name`` cannot train, in one sentence naming what can:
    a latent that cannot be reparameterized (a Bernoulli code) for the four objectives, which all
    differentiate through the guide's draws (the fast ELBO, the IWAE bounds); a function-style
    guide for ``iwae-dreg``, which holds the parameters of a module fixed. (The first step failed
    with a ValueError or TypeError, after the run directory was made.) The guide is run on
    ``two`` training examples (with ``labels``, a conditional model's)."""
    from pyro_vae.inference.weights import record_sites, unreparameterized_latent

    sites = record_sites(guide, two, **labels)
    site_name = unreparameterized_latent(sites)
    if site_name is not None:
        raise ConfigError(f"objective={name!r} differentiates through the guide's draws, and its site "
                          f"'{site_name}' ({type(sites[site_name]['fn']).__name__}) cannot be reparameterized (its "
                          "gradient would need a score-function term); pass objective=pyro.infer.Trace_ELBO(), which "
                          "has one, or TraceEnum_ELBO() to sum a discrete latent out.")
    if name == "iwae-dreg" and not isinstance(guide, torch.nn.Module):
        raise ConfigError("objective='iwae-dreg' evaluates log q with the guide's parameters held fixed, which needs "
                          "the guide to be a torch.nn.Module, and this one is a function; use objective='iwae' (the "
                          "same bound, with the IWAE gradient) or write the guide as a PyroModule.")


def _check_config_builds(config, model, guide, dataset: ImageDataset) -> None:
    """Refuse a ``config`` whose [model] table does not build the model and guide given
    (other sizes, another likelihood...): config.toml would describe another model, and
    ``pyro-vae evaluate``/``plot`` could not reopen the run."""
    from pyro_vae.build import build_vae
    from pyro_vae.runs import num_classes

    def shapes(module) -> dict:
        return {k: tuple(v.shape) for k, v in module.state_dict().items()}

    try:
        with random_state_kept():  # building initialises weights: leave the RNG as it was
            built = build_vae(config.model, tuple(dataset.image_shape), num_classes(dataset), check_effect=False)
    except Exception as err:  # noqa: BLE001 - any reason it cannot build for these data
        raise ConfigError(f"config's [model] table cannot build a model for these data ({err}); pass the "
                          "ModelConfig the model and guide were built from.") from None
    for name, given, expected in zip(("model", "guide"), (model, guide), built):
        if not isinstance(given, torch.nn.Module) or shapes(given) != shapes(expected):
            raise ConfigError(f"config's [model] table does not describe the {name} given (it builds one with other "
                              "parameters); pass the ModelConfig the model and guide were built from, or no config.")


def _as_trained(config, recorded: dict, epochs: int, device: str, figures: bool):
    """A copy of ``config`` whose [train] table says what fit trains with (its arguments,
    not the table's values, which fit does not read), so that config.toml records the run
    that ``pyro-vae evaluate``/``plot``/``train --resume`` reopen. An objective object has no
    name there: the table's ``objective`` is kept, and the checkpoint's fit_settings name it."""
    import copy

    from pyro_vae.config import OBJECTIVES

    config = copy.deepcopy(config)
    train = TrainConfig()  # what fit does not set (selection, patience, trackers) is the default's
    for key in ("batch_size", "learning_rate", "lr_decay", "clip_norm", "beta", "kl_warmup_epochs", "seed"):
        setattr(train, key, recorded[key])
    train.epochs, train.device, train.figures = epochs, device, figures
    train.objective = recorded["objective"] if recorded["objective"] in OBJECTIVES else config.train.objective
    for key in ("k", "num_particles"):
        if recorded[key] is not None:
            setattr(train, key, recorded[key])
    config.train = train
    return config


def data_digest(dataset: ImageDataset) -> str:
    """SHA-256 of the training and validation splits as stored (shape, dtype, bytes, labels):
    what a resumed fit must be given again. About a second for 50,000 float images."""
    import hashlib

    from pyro_vae.data.folders import ByteImages

    digest = hashlib.sha256()
    for split in (dataset.train, dataset.valid):
        images = split.images
        stored = images.data[images.rows] if isinstance(images, ByteImages) else images
        for tensor in (stored, split.labels):
            if tensor is None:
                digest.update(b"none")
                continue
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{tuple(tensor.shape)} {tensor.dtype}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy() if tensor.numel() else b"")
    return digest.hexdigest()


def _check_resumable(path: Path, recorded: dict, config, digest: str | None = None, epochs: int | None = None) -> None:
    """Refuse ``resume=True`` with a setting other than the run's own: the run would go on
    as another one (a new learning rate, batch size, objective or seed's latent noise) while
    claiming to continue it, or with other data (``digest``, :func:`data_digest`) under the
    same name. Only ``epochs``, ``device``, ``figures``, ``progress`` and ``log`` may change.
    Runs written before the settings (or the data's digest) were recorded are not checked.
    ``epochs`` below the epochs the run has trained (or no more than it had finished where it
    stopped inside the next) is refused, as the CLI's ``--epochs``: a run is not cut back."""
    checkpoint = load_checkpoint(path, map_location="cpu")
    batch_size = (checkpoint.get("fit_settings") or recorded)["batch_size"]  # the run's own, for its steps an epoch
    refusal = None if epochs is None else cut_back(checkpoint, epochs, "epochs={}", path.parent, batch_size)
    if refusal is not None:
        raise ConfigError(refusal)
    trained_on = checkpoint.get("fit_data_digest")
    if trained_on is not None and digest is not None and trained_on != digest:
        raise ConfigError(f"resume=True continues the run in {path.parent}, which was trained on other data (its "
                          "training or validation images or labels differ from those given); give the same data "
                          "or fit a new run_dir.")
    before = checkpoint.get("fit_settings")
    for key, value in recorded.items():
        if before is not None and key in before and before[key] != value:
            raise ConfigError(f"resume=True continues the run in {path.parent}, which was trained with {key}="
                              f"{before[key]!r}, not {value!r}; give its value (only epochs, device, figures, "
                              "progress and log may change) or fit a new run_dir.")
    def fixed(raw):  # the config without what may change on resume
        return raw and {**raw, "train": {k: v for k, v in raw["train"].items() if k not in ("epochs", "device",
                                                                                        "figures")}}

    given = config.to_dict() if config is not None else None
    if before is not None and fixed(checkpoint.get("config")) != fixed(given):
        raise ConfigError(f"resume=True continues the run in {path.parent}, but the config given differs from the "
                          f"one it was begun with ({'none' if checkpoint.get('config') is None else 'its config.toml'}"
                          "); give the same config or fit a new run_dir.")


def _criterion(row: dict) -> float:
    return row.get("valid_iwae", row["valid_elbo"])


def _summary(trainer: Trainer, dataset: ImageDataset, best: dict, objective: str, seconds: float,
             config=None, has_test: bool = True) -> dict:
    common = {"dataset": dataset.name, "objective": objective, "epochs": trainer.state.epoch,
              "best_epoch": best["epoch"], "best_valid_criterion": best["best_valid_elbo"]}
    if not has_test:  # the validation images chose the best epoch: their ELBO is no test number
        return {**common, "selection": trainer.describe_selection(),
                "test_split": "none given (data were (train, valid) tensors); no test numbers",
                "unit": "nats per example", "train_seconds_this_session": seconds}
    test = evaluate_elbo(trainer.model, trainer.guide, dataset.test.images, analytic_kl=True,
                         labels=dataset.test.labels)
    # The number's kind, as the CLI's summary gives it: known from a library model's config, or
    # without one for a plain model (:func:`_plain_model_config`).
    likelihood = getattr(trainer.model, "likelihood", None)
    if config is None and likelihood is not None:
        config = _plain_model_config(trainer.model, likelihood, dataset)
    if not getattr(trainer.model, "has_marginal_likelihood", True):  # an autoencoder: no ELBO, no log p(x)
        if config is not None and likelihood is not None:
            from pyro_vae.runs import reconstruction_kind

            common.update(reconstruction_kind(_as_given(config, dataset), likelihood))
            binary = _binary_mass_of_given_images(trainer.model, dataset)
            if binary:  # 0/1 tensors given to an 8-bit likelihood: as for a VAE's test ELBO below
                common["kind"] = binary
        return {**common, "selection": "best validation reconstruction log p(x | code)",
                "test_reconstruction": test["reconstruction"],
                "test_reconstruction_stderr": test["reconstruction_stderr"],
                "unit": "nats per example", "train_seconds_this_session": seconds}
    kind = {}  # the test ELBO's kind and bits/dim
    if config is not None and likelihood is not None:
        from pyro_vae.runs import kind_fields

        kind = kind_fields(_as_given(config, dataset), likelihood, dataset.image_shape, test["elbo"],
                           test["elbo_stderr"], _binary_mass_of_given_images(trainer.model, dataset))
    return {"dataset": dataset.name, "objective": objective, "epochs": trainer.state.epoch,
            "best_epoch": best["epoch"],
            "selection": trainer.describe_selection(),  # with the K of an IWAE bound, as the CLI's
            "best_valid_criterion": best["best_valid_elbo"], "test_elbo": test["elbo"],
            "test_elbo_stderr": test["elbo_stderr"],  # over the test images
            "test_reconstruction": test["reconstruction"], "test_reconstruction_stderr": test["reconstruction_stderr"],
            "test_kl": test["kl"], "test_kl_stderr": test["kl_stderr"], "unit": "nats per example",
            **kind, "train_seconds_this_session": seconds}


def _plain_model_config(model, likelihood, dataset: ImageDataset):
    """A Config that says what a model given without one scores, where that is known from the
    model alone: an unconditional model of whole images with a library likelihood (its ELBO
    bounds log p(x), of the kind its likelihood and the data's binarization make); else None
    (a label model's or quadrant completion's quantity is not read from the objects)."""
    from pyro_vae.config import Config
    from pyro_vae.likelihoods import LIKELIHOODS

    name = getattr(likelihood, "name", None)
    if name not in LIKELIHOODS or getattr(model, "num_classes", 0) or hasattr(model, "complete"):
        return None
    config = Config()
    config.model.likelihood, config.data.binarize, config.data.dataset = name, dataset.binarize, dataset.name
    return config


def _binary_mass_of_given_images(model, dataset: ImageDataset) -> str | None:
    """The kind "probability mass on binary data" where the test images are all 0/1 and the
    model's likelihood scores them as such (images given as tensors record binarize "none", so
    the config alone called an 8-bit likelihood's number on them a mass on 8-bit data, where
    ``importance_log_likelihood`` says a mass on binary data of the same images); else None."""
    from pyro_vae.data.datasets import as_tensor
    from pyro_vae.inference.kinds import BINARY_MASS
    from pyro_vae.inference.loglik import kind_of_scores

    return BINARY_MASS if kind_of_scores(model, as_tensor(dataset.test.images)) == BINARY_MASS else None


def _as_given(config, dataset: ImageDataset):
    """``config`` with ``binarize = "auto"`` made what the data were given as (the ImageDataset
    says how), so that the kind of a number says binary or 8-bit data."""
    if config.data.binarize != "auto":
        return config
    import copy

    config = copy.deepcopy(config)
    config.data.binarize = dataset.binarize
    return config


def _figures(model, guide, dataset: ImageDataset, run_dir: Path, device, objective: str) -> list[Path]:
    """The CLI's figures where the programs can draw them (a decoder mean and an encoder),
    else the training curves alone."""
    from pyro_vae.runs import _figures as run_figures, read_metrics
    from pyro_vae.plots import plot_curves

    drawable = (hasattr(model, "decode_mean") and hasattr(model, "latent_dim") and hasattr(guide, "encode")
                and len(dataset.image_shape) == 3)
    if drawable:
        return run_figures(model, guide, dataset, run_dir, device, objective)
    return [plot_curves(read_metrics(run_dir), run_dir / "curves.png", objective)]
