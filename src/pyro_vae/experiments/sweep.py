"""Sweeps: many training runs over a grid or a search space, as one Optuna study.

A sweep directory holds

* ``sweep.json``: the base configuration and the sweep (grid or search ranges, seeds,
  metric), written once; a rerun with a different sweep is refused;
* ``study.db``: the Optuna study (``sqlite:///SWEEP_DIR/study.db``, or ``--storage URL``
  for several machines), which is the record of what ran, what failed and why;
* one ordinary run directory per trial, named from its settings
  (``beta=2,objective=iwae,seed=1``): trainable, resumable and plottable alone;
* ``results.csv``: one row per finished run, its numbers read from its ``summary.json``.

Grids use Optuna's ``GridSampler``: every grid point (times the seeds) is put in the
study's queue once (``enqueue_trial``) and a worker takes the next one by Optuna's atomic
pop of a waiting trial, so several processes, or machines on one database, share the
work and never run one point twice. A search (``--search latent_dim=int:8:64``) asks
Optuna's TPE or random sampler for each trial's settings instead.

An interrupted sweep continues with the same command: finished trials are kept, a trial
whose process died (its row still RUNNING, its process gone from this machine) is marked
failed and its run directory resumed from its last checkpoint, and points whose trials
failed with an error are tried again. A trial that fails records the error in Optuna's
FAIL state (user attribute ``error``) and the other trials go on.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import contextlib
import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pyro_vae.config import SECTIONS, SEMI_SUPERVISED, Config, field_types
from pyro_vae.errors import ConfigError, PyroVAEError, TrainingInterrupted

SWEEP_FILE = "sweep.json"
RESULTS = "results.csv"
STUDY_DB = "study.db"
#: A RUNNING trial with no owner recorded this long after it started is taken as dead.
UNOWNED_GRACE_SECONDS = 600

#: Settings that change the kind of a run's log-likelihood (what data it is a mass or density
#: on, or which quantity it is): a search cannot rank its trials across their values.
KIND_KEYS = ("likelihood", "binarize", "dataset", "model", "given_quadrants")
#: Settings that change which images, or how many pixel values, a run of your own data scores:
#: a search cannot rank its trials across their values either.
IMAGE_KEYS = ("image_size", "image_mode", "data_dir")
#: Settings that change what a run logs or draws, or how fast it reads its images, and never its
#: model or its numbers: a sweep over one would train the same model under several names.
UNSWEPT_KEYS = ("figures", "figure_every", "tensorboard", "mlflow", "workers", "cache_images")

#: What a sweep can optimise and report, all "higher is better", read from summary.json.
METRICS = {
    "valid_elbo": "validation ELBO at the best epoch (nats per example)",
    "valid_iwae": "validation IWAE bound at the best epoch (nats per example; --objective iwae runs)",
    "valid_loglik": ("validation log p(x) by importance sampling at the best epoch (nats per example; "
                     "--select-by valid-loglik runs, K=--select-k on --select-examples images)"),
    "selection": "the number that chose the best epoch (validation ELBO, IWAE bound or accuracy)",
    "test_elbo": "test ELBO of the best model (nats per example)",
    "valid_accuracy": "validation accuracy of q(y | x) at the best epoch (--model m2)",
    "test_accuracy": "test accuracy of q(y | x) at the best epoch (--model m2)",
}


def optuna_module():
    """Optuna, or one sentence naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("sweeps run on Optuna, which is not installed: pip install 'pyro-vae[sweep]'.") from None
    return optuna


def metric_available(config: Config, metric: str) -> bool:
    """Whether runs of ``config`` produce ``metric``."""
    semi = config.model.model in SEMI_SUPERVISED
    if metric in ("valid_accuracy", "test_accuracy"):
        return semi
    if metric == "valid_iwae":  # written when the validation IWAE bound selects (--select-by, auto for iwae)
        select = config.train.select_by
        return not semi and (select == "valid-iwae" or (select == "auto" and config.train.objective.startswith("iwae")))
    if metric == "valid_loglik":  # written every epoch when the validation log-likelihood selects
        return not semi and config.train.select_by == "valid-loglik"
    if metric in ("valid_elbo", "test_elbo"):
        return not semi
    return metric == "selection"


def metric_value(summary: dict, metric: str) -> float:
    """``metric`` read from a run's ``summary.json``."""
    if metric == "selection":
        return float(summary["best_valid_criterion"] if "best_valid_criterion" in summary
                     else summary["valid_accuracy"])
    if metric in summary:
        return float(summary[metric])
    return float(summary["best_epoch_metrics"][metric])


def metric_stderr(summary: dict, metric: str) -> float | None:
    """The standard error of ``metric`` over the images it was computed on (validation or
    test images; the binomial one for an accuracy), where the run recorded it, else None."""
    if metric == "selection":
        best = summary.get("best_epoch_metrics", {})
        chosen = [key for key in ("valid_loglik", "valid_iwae") if key in best] or ["valid_elbo"]
        metric = "valid_accuracy" if "valid_accuracy" in summary else chosen[0]
    for table in (summary, summary.get("best_epoch_metrics", {})):
        if table.get(f"{metric}_stderr") is not None:  # null: unknown (runs.json_ready)
            return float(table[f"{metric}_stderr"])
    return None


def metric_measure(config: Config, metric: str) -> str:
    """What ``metric`` is in runs of ``config``: the bound or estimate, with its number of
    importance samples K (``selection`` resolved to the number that selects, as the run's
    ``--select-by`` makes it). Two runs' values rank their models only where this is the same:
    a bound with more samples is higher for the same model."""
    from pyro_vae.runs import _selection

    if metric == "selection" and config.model.model not in SEMI_SUPERVISED:
        metric = _selection(config.train)["selection"].replace("-", "_")  # valid_elbo, valid_iwae, valid_loglik
    if metric == "valid_iwae":
        return f"the validation IWAE bound with K={config.train.k}"
    if metric == "valid_loglik":
        return f"the validation log p(x) by importance sampling with K={config.train.select_k}"
    return "the validation ELBO" if metric == "valid_elbo" else METRICS[metric]


def describe_metric(summary: dict, metric: str) -> str:
    """``valid_elbo -485.9467 ± 0.3203 nats per example (a lower bound on log p(x), probability
    mass on binary data)``: the number with what it is, the kind of its data as summary.json
    records it (``selection`` names the number that selected); an accuracy is a fraction."""
    value, se = metric_value(summary, metric), metric_stderr(summary, metric)
    accuracy = metric.endswith("accuracy") or (metric == "selection" and "valid_accuracy" in summary)
    spread = f" ± {se:.4f}" if se is not None else " (no standard error recorded)"
    if accuracy:
        return f"{metric} {value:.4f}{spread} (a fraction of the images)"
    from pyro_vae.experiments.compare import AUTOENCODER_NUMBER, is_autoencoder

    if is_autoencoder(summary):  # its "valid_elbo" is its reconstruction term: no bound on anything
        return f"{metric} {value:.4f}{spread} nats per example ({AUTOENCODER_NUMBER})"
    selected_by = str(summary.get("selection", "")).removeprefix("best ")
    estimate = metric == "valid_loglik" or (metric == "selection" and "log-likelihood" in selected_by)
    what = (f"{selected_by}: " if metric == "selection" and selected_by else "") + (
        "an importance-sampled estimate of " if estimate else "a lower bound on ") + summary.get("quantity", "log p(x)")
    kind = summary.get("kind")
    return f"{metric} {value:.4f}{spread} nats per example ({what}{', ' + kind if kind else ''})"


# -- the sweep's definition -------------------------------------------------------------

def _key_kind(key: str) -> type:
    for cls in SECTIONS.values():
        kinds = field_types(cls)
        if key in kinds:
            return kinds[key]
    raise AssertionError(key)


def canonical_key(key: str, source: str) -> str:
    """The bare config key (``beta``) for ``beta`` or ``train.beta``; unknown keys refused."""
    section, name = Config()._locate(key.strip(), source)
    return name


def typed_value(key: str, value: Any, source: str) -> Any:
    """``value`` checked and converted as the config would (``"1"`` -> 1.0 for beta); a list
    value (hidden_dims) becomes text "512,256", because Optuna's grid holds plain values."""
    config = Config()
    config.set(key, value, source=source)
    section, _ = config._locate(key, source)
    out = getattr(getattr(config, section), key)
    return ",".join(map(str, out)) if isinstance(out, list) else out


def format_value(value: Any) -> str:
    """A value as it appears in a run directory's name: 0.5, 2, iwae, 512-256."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace(",", "-")


def _one_folder(text: str) -> str:
    """``text`` with "%" and the path separators written as %25, %2F and %5C, so that it names
    one folder, distinct for distinct texts."""
    return text.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")


@dataclass
class SearchRange:
    """One search dimension: ``int:LOW:HIGH``, ``float:LOW:HIGH``, ``logfloat:LOW:HIGH`` or
    ``choice:A,B,C`` (the bounds included)."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: list = field(default_factory=list)
    text: str = ""

    @classmethod
    def parse(cls, key: str, text: str) -> SearchRange:
        kind, _, rest = str(text).partition(":")
        example = "int:8:64, float:0.1:2, logfloat:1e-4:1e-2 or choice:relu,elu"
        if kind == "choice":  # a list-valued key's choices are separated by ';', as its grid values
            separator = ";" if _key_kind(canonical_key(key, f"--search {key}")) is list else ","
            choices = [typed_value(key, v.strip(), f"--search {key}") for v in rest.split(separator) if v.strip()]
            if not choices:
                raise ConfigError(f"--search {key}: the choice list is empty; give values like {example}.")
            if len(set(map(str, choices))) != len(choices):  # a repeat would be drawn twice as often, unsaid
                raise ConfigError(f"--search {key}={text} repeats a choice ({choices}), which would be drawn twice as "
                                  "often as the others; list each choice once.")
            return cls("choice", choices=choices, text=str(text))
        parts = rest.split(":")
        if kind not in ("int", "float", "logfloat") or len(parts) != 2:
            raise ConfigError(f"--search {key}={text} is not a range; write {example}.")
        try:
            low, high = (int(p) if kind == "int" else float(p) for p in parts)
        except ValueError:
            raise ConfigError(f"--search {key}={text}: the bounds must be numbers; write {example}.") from None
        if not low < high or (kind == "logfloat" and low <= 0):
            raise ConfigError(f"--search {key}={text}: the range needs LOW < HIGH (and LOW > 0 for logfloat).")
        return cls(kind, low, high, text=str(text))

    def suggest(self, trial, key: str) -> Any:
        if self.kind == "int":
            return trial.suggest_int(key, int(self.low), int(self.high))
        if self.kind == "choice":
            return trial.suggest_categorical(key, self.choices)
        return trial.suggest_float(key, self.low, self.high, log=self.kind == "logfloat")

    def corners(self) -> list:
        """Values that every sampled value lies between (to validate before starting)."""
        return self.choices if self.kind == "choice" else [self.low, self.high]


@dataclass
class SweepSpec:
    """A base configuration and what varies: a ``grid`` (every combination, times the
    ``seeds``) or ``search`` ranges (``trials`` settings drawn by ``sampler``). The base is
    kept unvalidated (``binarize = "auto"`` stays so), as each point resolves it for itself."""

    base: Config
    grid: dict[str, list] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    search: dict[str, SearchRange] = field(default_factory=dict)
    trials: int = 0
    metric: str = "valid_elbo"
    sampler: str = "grid"

    @property
    def is_grid(self) -> bool:
        return not self.search

    def points(self) -> list[dict]:
        """Every grid point with its seed, in a fixed order: all combinations with the first
        seed, then with the next (so a sweep cut short has every setting once before repeats)."""
        keys = list(self.grid)
        return [dict(zip(keys, values), seed=seed)
                for seed in self.seeds for values in itertools.product(*(self.grid[k] for k in keys))]

    def point_config(self, params: dict) -> Config:
        """The base with ``params`` set, checked but with every option kept as given."""
        config = copy.deepcopy(self.base)
        for key, value in params.items():
            config.set(key, value, source=f"the sweep's {key}")
        return config.validate(check_effect=False)

    def config_for(self, params: dict) -> Config:
        """The run's configuration at ``params``: an option of the base that has no effect at
        this point (``--k 2`` at the ELBO points of ``--grid objective=elbo,iwae``) goes back to
        its default, as a run given it alone would record it. (A swept key without effect at
        some point is refused by :meth:`validate`: its runs there would differ in name alone.)"""
        from pyro_vae.config import ineffective_options

        config, defaults = self.point_config(params), Config()
        for key, _ in ineffective_options(config):
            section, name = key.split(".")
            if key != "data.binarize":  # a wrong binarization is refused below, not dropped
                setattr(getattr(config, section), name, copy.deepcopy(getattr(getattr(defaults, section), name)))
        return config.validate()

    def _check_swept_keys_take_effect(self) -> None:
        """Refuse a swept key that has no effect at some point of the sweep (``k`` with the
        ELBO objective, or at the ELBO points of an objective x k grid): its runs there would
        differ in name alone, all training the default, as ``train`` refuses the option alone.
        A grid is checked at every point; a search at every combination of its ranges' bounds
        and choices (what has no effect does not depend on where in a range a value lies)."""
        from pyro_vae.config import ineffective_options

        if self.is_grid:
            points = [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]
        else:
            points = [dict(zip(self.search, values))
                      for values in itertools.product(*(r.corners() for r in self.search.values()))]
        for point in points:
            for key, sentence in ineffective_options(self.point_config(point | {"seed": self.seeds[0]})):
                name = key.split(".")[1]
                if name not in point or key == "data.binarize":  # a wrong binarization: config_for refuses it
                    continue
                if self.is_grid:
                    listed = _key_kind(name) is list  # hidden_dims=512,256;128
                    shown = (";" if listed else ",").join(str(v) if listed else format_value(v) for v in self.grid[name])
                    swept = f"--grid {name}={shown}"
                else:
                    swept = f"--search {name}={self.search[name].text}"
                raise ConfigError(f"the sweep's {swept} has no effect at its point {self.run_name(point)}: {sentence}")

    def _check_search_ranks_alike(self) -> None:
        """Refuse a search whose ``metric`` is another bound or estimate at some of its points
        (:func:`metric_measure`): ``selection`` over ``objective`` (an ELBO at one point, an
        IWAE bound at another), ``valid_iwae`` over ``k``. Its best trial would be the one with
        the looser or tighter bound, not the better model. Checked at every combination of the
        ranges' bounds and choices, as what a key changes does not depend on where in a range
        a value lies."""
        measured: dict[str, dict] = {}
        for values in itertools.product(*(r.corners() for r in self.search.values())):
            point = dict(zip(self.search, values))
            measured.setdefault(metric_measure(self.config_for(point | {"seed": self.seeds[0]}), self.metric), point)
        if len(measured) > 1:
            (first, at_first), (second, at_second) = list(measured.items())[:2]
            raise ConfigError(f"--search {' '.join(f'{k}={r.text}' for k, r in self.search.items())} would rank its "
                              f"trials by --metric {self.metric}, which is {first} at {self.run_name(at_first)} and "
                              f"{second} at {self.run_name(at_second)}: a bound with more samples is higher for the "
                              "same model, so the search would favour it, not the better model; choose a --metric "
                              "that measures every trial alike (valid_elbo, test_elbo), or sweep these with --grid "
                              "and compare the runs' log p(x) (pyro-vae evaluate RUN --k K, then pyro-vae compare).")

    def run_name(self, params: dict, number: int | None = None) -> str:
        """``beta=2,objective=iwae,seed=1``; a search trial's name starts with its number. A
        path's "/" is written %2F (and "%" %25): the name is one folder of the sweep directory.
        (``--grid init_from=/a/r1,/a/r2`` made ``SWEEP/init_from=/a/r1,seed=0``, folders inside
        folders that compare and the sweep's figure never found, and ``..`` could lead out.)"""
        parts = [f"{k}={_one_folder(format_value(v))}" for k, v in params.items() if k != "seed"]
        if "seed" in params:
            parts.append(f"seed={params['seed']}")
        if number is not None:
            parts.insert(0, f"trial={number:04d}")
        return ",".join(parts)

    def to_dict(self) -> dict:
        return {"base": self.base.to_dict(), "grid": self.grid, "seeds": self.seeds,
                "search": {k: r.text for k, r in self.search.items()}, "trials": self.trials,
                "metric": self.metric, "sampler": self.sampler}

    @classmethod
    def from_dict(cls, raw: dict) -> SweepSpec:
        base = Config.from_dict(raw["base"], source=SWEEP_FILE)
        return cls(base, {k: list(v) for k, v in raw["grid"].items()}, list(raw["seeds"]),
                   {k: SearchRange.parse(k, t) for k, t in raw["search"].items()}, raw["trials"], raw["metric"],
                   raw["sampler"])

    def validate(self) -> SweepSpec:
        """Refuse a sweep that cannot run, before any trial starts: empty grids, a value
        the config refuses, a metric the runs do not produce."""
        if self.grid and self.search:
            raise ConfigError("give a grid (--grid) or search ranges (--search), not both.")
        if "seed" in self.grid or "seed" in self.search:
            raise ConfigError("seeds are swept with --seeds N (seeds 0..N-1) or a list in [sweep] seeds, "
                              "not with --grid seed=...")
        for key in [k for k in (*self.grid, *self.search) if k in UNSWEPT_KEYS]:
            swept = "--grid" if key in self.grid else "--search"
            raise ConfigError(f"{swept} {key} has no effect on the runs' models or numbers ({key} changes only what a "
                              "run logs or draws, or how fast it reads its images), so its runs would train the same "
                              "model under different names; set it once for every run (its flag, or the config "
                              "file) instead.")
        for key, values in self.grid.items():
            if not values:
                raise ConfigError(f"the grid for {key} is empty; give at least one value (--grid {key}=A,B).")
            if len(set(map(str, values))) != len(values):
                raise ConfigError(f"the grid for {key} repeats a value ({values}); list each value once.")
            names = [format_value(v) for v in values]
            alike = next((v for v, name in zip(values, names) if names.count(name) > 1), None)
            if alike is not None:  # one run directory for two points: the second failed, its row dropped, exit 0
                twins = [str(v) for v, name in zip(values, names) if name == format_value(alike)]
                raise ConfigError(f"the grid for {key} has values that name one run directory ({' and '.join(twins)} "
                                  f"are both {key}={format_value(alike)}); give values that differ in their first "
                                  "6 significant digits.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError("--seeds must be at least 1 (or a list of distinct seeds of 0 or more).")
        if self.metric not in METRICS:
            raise ConfigError(f"unknown --metric '{self.metric}'; choose from {', '.join(METRICS)}.")
        if self.search:
            if self.trials < 1:
                raise ConfigError("a search needs --trials N (N at least 1).")
            if self.sampler not in ("tpe", "random"):
                raise ConfigError(f"--sampler must be tpe or random for a search, not '{self.sampler}'.")
            if len(self.seeds) != 1:
                raise ConfigError("a search runs each trial once with the config's seed; repeat seeds in a grid "
                                  "(--grid with --seeds N) or drop --seeds.")
            if self.metric.startswith("test_"):  # the test images would choose the settings they then score
                raise ConfigError(f"a search steers its trials by --metric, and {self.metric} is measured on the test "
                                  "images, which would then choose the settings whose test number they report (no "
                                  "longer a measure on unseen data); search by a validation metric (valid_elbo, "
                                  "valid_accuracy...) and read the test numbers in results.csv.")
            ranked_apart = [key for key in KIND_KEYS if key in self.search]
            if ranked_apart:  # the search would pick its best by a number whose meaning changes with the key
                raise ConfigError(f"--search over {ranked_apart[0]} would rank by one --metric numbers of different "
                                  "kinds (a mass on binary or on 8-bit data, a density), which cannot be ranked; "
                                  f"sweep {ranked_apart[0]} with --grid and read the runs with pyro-vae compare "
                                  "(it notes which cannot be ranked), or search the other settings at one value of it.")
            own = {"image-folder": IMAGE_KEYS, "idx": ("data_dir",)}.get(self.base.data.dataset, ())
            resized = [key for key in own if key in self.search]
            if resized:  # a log-likelihood over fewer pixel values is higher: the search would favour the smallest
                raise ConfigError(f"--search over {resized[0]} would rank by one --metric, in nats per example, "
                                  "numbers of other images (more or fewer pixel values, or another folder's), so its "
                                  "best trial would be the one with the easiest images, not the better model; sweep "
                                  f"{resized[0]} with --grid and read the runs with pyro-vae compare, or search the "
                                  "other settings at one value of it.")
            self._check_search_ranks_alike()
            configs = [self.config_for({k: r.corners()[i % len(r.corners())] for k, r in self.search.items()}
                                       | {"seed": self.seeds[0]}) for i in range(2)]
        else:
            configs = [self.config_for(point) for point in self.points()]
        from pyro_vae.config import ineffective_options

        points = self.points() if self.is_grid else [
            {k: r.corners()[i % len(r.corners())] for k, r in self.search.items()} | {"seed": self.seeds[0]}
            for i in range(2)]
        self._check_swept_keys_take_effect()
        unused = [dict(ineffective_options(self.point_config(p))) for p in points]
        always = [key for key in unused[0] if key != "data.binarize" and all(key in u for u in unused[1:])]
        if always:  # an option that no run of the sweep would use
            raise ConfigError(unused[0][always[0]])
        for config in configs:
            if not metric_available(config, self.metric):
                raise ConfigError(f"the runs do not all produce --metric {self.metric} "
                                  f"({METRICS[self.metric]}); choose one they do, e.g. "
                                  f"{'valid_accuracy' if config.model.model in SEMI_SUPERVISED else 'valid_elbo'}.")
        return self


def parse_grid(entries: list[str]) -> dict[str, list]:
    """``["beta=0.5,1,2", "objective=elbo,iwae"]`` -> ``{"beta": [0.5, 1.0, 2.0], ...}``.
    List-valued keys (hidden_dims) separate their values with ';': ``hidden_dims=512,256;128``."""
    grid = {}
    for entry in entries:
        key, sep, values = entry.partition("=")
        if not sep:
            raise ConfigError(f"--grid {entry}: write KEY=V1,V2 (e.g. --grid beta=0.5,1,2).")
        key = canonical_key(key, f"--grid {entry}")
        if key in grid:  # the second would replace the first's values without a word
            raise ConfigError(f"--grid {key} is given twice; list all its values in one --grid {key}=V1,V2,...")
        parts = values.split(";") if _key_kind(key) is list else values.split(",")
        grid[key] = [typed_value(key, v.strip(), f"--grid {key}") for v in parts if v.strip()]
    return grid


def parse_search(entries: list[str]) -> dict[str, SearchRange]:
    search = {}
    for entry in entries:
        key, sep, text = entry.partition("=")
        if not sep:
            raise ConfigError(f"--search {entry}: write KEY=int:LOW:HIGH (e.g. --search latent_dim=int:8:64).")
        key = canonical_key(key, f"--search {entry}")
        if key in search:  # the second would replace the first's range without a word
            raise ConfigError(f"--search {key} is given twice; give it one range (--search {key}=int:LOW:HIGH, "
                              "float:..., logfloat:... or choice:A,B).")
        search[key] = SearchRange.parse(key, text)
    return search


def read_toml(path: str | Path) -> dict:
    """A config file's tables, or one sentence saying why it cannot be read."""
    import tomllib

    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the path.") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML ({err}); fix the syntax.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read ({err}).") from None


def split_sweep_table(raw: dict, source: str) -> tuple[dict, dict]:
    """A config file's ``[sweep]`` table and the rest (the base configuration)."""
    raw = dict(raw)
    table = raw.pop("sweep", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: 'sweep' must be a table ([sweep]).")
    known = {"grid", "seeds", "search", "trials", "metric", "sampler"}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"{source}: unknown key '{sorted(unknown)[0]}' in [sweep]; valid: {', '.join(sorted(known))}.")
    _check_sweep_types(table, source)
    return raw, table


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: What each [sweep] key must be: a test of a TOML value, and how to write one.
SWEEP_TYPES = {
    "trials": (_whole, "a whole number (trials = 20)"),
    "seeds": (lambda v: _whole(v) or (isinstance(v, list) and all(map(_whole, v))),
              "a whole number of seeds or a list of seeds (seeds = 3, or seeds = [0, 4])"),
    "metric": (lambda v: isinstance(v, str), 'the name of a metric in quotes (metric = "valid_elbo")'),
    "sampler": (lambda v: isinstance(v, str), 'the name of a sampler in quotes (sampler = "tpe")'),
    "grid": (lambda v: isinstance(v, dict), "a table ([sweep.grid] with beta = [0.5, 1, 2])"),
    "search": (lambda v: isinstance(v, dict), 'a table ([sweep.search] with latent_dim = "int:8:64")'),
}


def _check_sweep_types(table: dict, source: str) -> None:
    """Refuse a [sweep] value of the wrong type in one sentence: ``trials = 1.5`` and
    ``seeds = 2.7`` were cut to whole numbers without a word, ``seeds = ["a"]``, ``grid = 3``
    or ``metric = ["a"]`` ended in a traceback."""
    for name, (fits, how) in SWEEP_TYPES.items():
        if name in table and not fits(table[name]):
            raise ConfigError(f"{source}: [sweep] {name} must be {how}, not {table[name]!r}.")


def build_spec(base: Config, table: dict, grid: list[str], search: list[str], seeds: str | None,
               trials: int | None, metric: str | None, sampler: str | None, source: str = "[sweep]") -> SweepSpec:
    """The sweep from a config file's ``[sweep]`` table and the flags (the flags win, key by key)."""
    spec_grid, spec_search, given_as = {}, {}, {}
    for part in ("grid", "search"):  # beta and "train.beta" name one key: the second replaced the first unsaid
        for key in table.get(part) or {}:
            name = canonical_key(key, f"{source} {part}")
            if (part, name) in given_as:
                raise ConfigError(f"{source} {part} gives {name} twice ({given_as[part, name]} and {key}); "
                                  f"{'list all its values' if part == 'grid' else 'give its one range'} under one "
                                  "key.")
            given_as[part, name] = key
    for key, values in (table.get("grid") or {}).items():
        name = canonical_key(key, f"{source} grid")
        if not isinstance(values, list):
            values = [values]
        spec_grid[name] = [typed_value(name, v, f"{source} grid.{name}") for v in values]
    spec_grid.update(parse_grid(grid))
    spec_search = {canonical_key(k, f"{source} search"): SearchRange.parse(k, v)
                   for k, v in (table.get("search") or {}).items()}
    spec_search.update(parse_search(search))
    if not spec_search:  # a grid trains each of its points: a number of trials or a sampler would change nothing
        for name, flag in (("trials", trials), ("sampler", sampler)):
            given = f"--{name} {flag}" if flag is not None else (
                f"{source} {name} = {table[name]!r}" if name in table else None)
            if given:
                raise ConfigError(f"{given} has no effect without a search: a grid trains each of its points "
                                  "once per seed; drop it or give --search ranges.")
    seeds_value = seeds if seeds is not None else table.get("seeds")
    if seeds_value is not None and base.train.seed != Config().train.seed:  # the runs take the sweep's seeds
        given = f"--seeds {seeds}" if seeds is not None else f"{source} seeds = {seeds_value!r}"
        raise ConfigError(f"--seed {base.train.seed} has no effect with {given}, which sets every run's seed "
                          "(0..N-1, or the list); drop --seed, or drop the sweep's seeds to train with it.")
    if seeds_value is None:
        seed_list = [base.train.seed]
    elif isinstance(seeds_value, list):
        seed_list = [int(s) for s in seeds_value]
    else:
        try:
            count = int(seeds_value)
        except ValueError:
            raise ConfigError(f"--seeds must be a whole number (how many seeds), not {seeds_value!r}.") from None
        if count < 1:
            raise ConfigError(f"--seeds must be at least 1, not {count}.")
        seed_list = list(range(count))
    return SweepSpec(base, spec_grid, seed_list, spec_search,
                     trials if trials is not None else int(table.get("trials", 0)),
                     metric or table.get("metric", "valid_elbo"),
                     "grid" if not spec_search else (sampler or table.get("sampler", "tpe"))).validate()


# -- the study ---------------------------------------------------------------------------

def default_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{(Path(sweep_dir) / STUDY_DB).resolve()}"


def quiet_optuna() -> None:
    """Optuna's own log lines (a line per trial told) off: the program's choice, made by the
    CLI, not by the library, which leaves its user's logging alone."""
    optuna = optuna_module()
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_study(spec: SweepSpec, sweep_dir: Path, storage: str | None, worker: int = 0):
    """The sweep's Optuna study (created on first use), maximising ``spec.metric``."""
    optuna = optuna_module()  # its logging is the caller's (the CLI quiets it: quiet_optuna)
    url = storage or default_storage(sweep_dir)
    # Several processes share a sqlite file: wait for its lock rather than fail at once.
    engine = {"connect_args": {"timeout": 300}} if url.startswith("sqlite") else {}
    rdb = _open_storage(optuna, url, engine, given=storage is not None)
    if spec.is_grid:
        sampler = _QueueGridSampler({**spec.grid, "seed": spec.seeds}, seed=spec.base.train.seed)
    elif spec.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=spec.base.train.seed + worker)
    else:
        sampler = optuna.samplers.RandomSampler(seed=spec.base.train.seed + worker)
    return optuna.create_study(storage=rdb, study_name=study_name(spec, sweep_dir), sampler=sampler,
                               direction="maximize", load_if_exists=True)


def study_name(spec: SweepSpec, sweep_dir: Path) -> str:
    """The name of the sweep's study in its storage: the one its ``sweep.json`` records; for a new
    sweep the directory's name and a digest of the sweep's definition (``b-3f9c0a1e2d``), the
    same on every machine that runs the same command. The name alone, used before (and still
    for a sweep begun then), let two sweeps of one name in two folders share a study in one
    ``--storage`` database, each queueing and ranking the other's trials."""
    record = Path(sweep_dir) / SWEEP_FILE
    if record.is_file():
        try:
            return json.loads(record.read_text()).get("study") or Path(sweep_dir).resolve().name
        except (OSError, ValueError):
            pass  # check_sweep_dir names the damaged file
    digest = hashlib.sha256(_canonical(spec.to_dict()).encode()).hexdigest()[:10]
    return f"{Path(sweep_dir).resolve().name}-{digest}"


def _open_storage(optuna, url: str, engine: dict, given: bool):
    """Optuna's storage at ``url``, or one sentence saying why it cannot be opened (a URL
    SQLAlchemy cannot parse, an unknown database, a missing driver, a database it cannot
    reach) instead of SQLAlchemy's traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except (SQLAlchemyError, ImportError) as err:
        cause = getattr(err, "orig", None) or err  # the database driver's own words, where it has them
        reason = (str(cause).strip().splitlines() or [type(err).__name__])[0].rstrip(".")
        if given:
            raise ConfigError(f"--storage {url} cannot be opened ({reason}); give a database URL that SQLAlchemy "
                              "can open (sqlite:///PATH/study.db, or postgresql://USER@HOST/DB with its driver "
                              "installed), or leave --storage out to keep the study in SWEEP_DIR/study.db.") from None
        raise ConfigError(f"the sweep's study {url} cannot be opened ({reason}); check that the sweep directory "
                          "is writable, or give --storage URL.") from None


def _grid_sampler_class():
    optuna = optuna_module()

    class QueueGridSampler(optuna.samplers.GridSampler):
        """Optuna's ``GridSampler`` fed from the queue. Its ``after_trial`` calls
        ``study.stop()``, which is meant for ``study.optimize`` loops and raises in an
        ask-and-tell loop like this one; the queue already says when the grid is done."""

        def after_trial(self, study, trial, state, values) -> None:
            return None

    return QueueGridSampler


def _QueueGridSampler(search_space: dict, seed: int):
    return _grid_sampler_class()(search_space, seed=seed)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _is_dead(trial) -> bool:
    """Whether a RUNNING trial's process is gone: its owner ran on this machine and the
    process no longer exists, or it never recorded an owner and started long ago."""
    owner = trial.user_attrs.get("owner")
    if owner is None:
        started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
        return time.time() - started > UNOWNED_GRACE_SECONDS
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return False  # another machine's trial: that machine's rerun reclaims it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def _trials_of(study):
    return [t for t in study.get_trials(deepcopy=False) if "run_dir" in t.user_attrs]


def prepare_queue(study, spec: SweepSpec, log: Callable[[str], None]) -> None:
    """Put what remains to be done in the queue: a trial whose process died is marked
    failed and queued again under the same run directory (to be resumed); for a grid,
    every point that has no finished, running or queued trial is queued; for a search, the
    settings of every failed trial whose run directory has none (its retry does not count
    toward ``--trials``)."""
    optuna = optuna_module()
    state = optuna.trial.TrialState
    for trial in _trials_of(study):
        if trial.state == state.RUNNING and _is_dead(trial):
            try:  # only one process wins this update; the others see a finished trial
                study._storage.set_trial_user_attr(trial._trial_id, "error", "interrupted: its process ended")
                study._storage.set_trial_user_attr(trial._trial_id, "requeued", True)
                study.tell(trial.number, state=state.FAIL)
            except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
                continue
            log(f"trial {trial.number} ({trial.user_attrs['run_dir']}) was interrupted; queued to resume")
            study.enqueue_trial(trial.params or trial.system_attrs.get("fixed_params", {}),
                                user_attrs={"run_dir": trial.user_attrs["run_dir"]})
    active = {t.user_attrs["run_dir"] for t in _trials_of(study)
              if t.state in (state.COMPLETE, state.RUNNING, state.WAITING)}
    if not spec.is_grid:  # a failed trial's settings again, under its run directory (not a new draw)
        for trial in _trials_of(study):
            name = trial.user_attrs["run_dir"]
            if trial.state == state.FAIL and name not in active:
                study.enqueue_trial(trial.params, user_attrs={"run_dir": name})
                active.add(name)
        return
    for point in spec.points():
        name = spec.run_name(point)
        if name not in active:
            study.enqueue_trial(point, user_attrs={"run_dir": name})


def _search_budget_left(study, spec: SweepSpec) -> bool:
    optuna = optuna_module()
    state = optuna.trial.TrialState
    # a point tried again (interrupted, or failed) is one of the --trials however often it is tried
    counted = {t.user_attrs["run_dir"] for t in _trials_of(study) if t.state != state.PRUNED}
    return len(counted) < spec.trials


def run_worker(spec: SweepSpec, sweep_dir: Path, storage: str | None = None, worker: int = 0,
               log: Callable[[str], None] = print) -> int:
    """Take trials from the study until none is left; returns how many this worker ran."""
    optuna = optuna_module()
    state = optuna.trial.TrialState
    study = open_study(spec, sweep_dir, storage, worker)
    done = 0
    while True:
        with ask_lock(Path(sweep_dir)):
            waiting = study.get_trials(deepcopy=False, states=(state.WAITING,))
            if not waiting and (spec.is_grid or not _search_budget_left(study, spec)):
                return done
            trial = study.ask()
        if spec.is_grid and "run_dir" not in trial.user_attrs:
            # Another worker took the last queued point between our look and our ask.
            trial.set_user_attr("note", "no grid point left when this worker asked")
            study.tell(trial, state=state.PRUNED)
            return done
        run_trial(study, trial, spec, Path(sweep_dir), log)
        done += 1


#: The file the workers of one sweep directory lock while they take a trial (:func:`ask_lock`).
ASK_LOCK = ".ask.lock"


@contextlib.contextmanager
def ask_lock(sweep_dir: Path):
    """Hold an exclusive lock on ``sweep_dir/.ask.lock`` (``fcntl.flock``) for the block.

    Why: Optuna's ``study.ask()`` takes a queued (WAITING) trial by reading its state and then
    setting it to RUNNING. On a SQLite storage, which has no row locks, two processes can both
    read WAITING and both take the same trial; one of them then trains a run directory the
    other is training, and fails to tell a trial the other already completed (seen under load).
    Workers on one machine share the sweep directory, so a file lock makes the take atomic.
    Where ``fcntl`` does not exist (Windows) the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(Path(sweep_dir) / ASK_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _suggest(trial, spec: SweepSpec) -> dict:
    if spec.is_grid:
        params = {key: trial.suggest_categorical(key, values) for key, values in spec.grid.items()}
        params["seed"] = trial.suggest_categorical("seed", spec.seeds)
        return params
    params = {key: r.suggest(trial, key) for key, r in spec.search.items()}
    return params | {"seed": spec.seeds[0]}


def run_trial(study, trial, spec: SweepSpec, sweep_dir: Path, log: Callable[[str], None]) -> None:
    """Train (or resume, or just read) the trial's run directory and tell Optuna its metric;
    an error is recorded in the trial (FAIL, user attribute ``error``) and not raised."""
    optuna = optuna_module()
    state = optuna.trial.TrialState
    trial.set_user_attr("owner", _owner())
    params = _suggest(trial, spec)
    name = trial.user_attrs.get("run_dir") or spec.run_name(params, trial.number)
    trial.set_user_attr("run_dir", name)
    run_dir = sweep_dir / name
    prefix = f"[{name}] "
    try:
        summary = train_or_resume(spec.config_for(params), run_dir, log=lambda line: log(prefix + line))
        value = metric_value(summary, spec.metric)
        if not math.isfinite(value):
            raise PyroVAEError(f"the run's {spec.metric} is {value}")
    except (TrainingInterrupted, KeyboardInterrupt):
        trial.set_user_attr("error", "interrupted: stopped by a signal")
        trial.set_user_attr("requeued", True)
        study.tell(trial, state=state.FAIL)
        study.enqueue_trial(params, user_attrs={"run_dir": name})
        raise
    except Exception as err:  # noqa: BLE001 - any failure is the trial's, recorded, not fatal
        message = f"{type(err).__name__}: {err}"
        trial.set_user_attr("error", message)
        study.tell(trial, state=state.FAIL)
        log(prefix + f"failed: {message}")
        return
    study.tell(trial, value)
    log(prefix + describe_metric(summary, spec.metric) + "; ± one standard error over the images")


def train_or_resume(config: Config, run_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Run ``config`` in ``run_dir``: read its summary if it finished, resume it if it has a
    checkpoint, start it otherwise."""
    from pyro_vae.runs import SUMMARY, is_run_dir, read_run_config, train_run

    if (run_dir / SUMMARY).is_file() and is_run_dir(run_dir) and read_run_config(run_dir) == config:
        return json.loads((run_dir / SUMMARY).read_text())
    if is_run_dir(run_dir):
        return train_run(None, run_dir, resume=True, overrides=config, progress=False, log=log)
    return train_run(config, run_dir, progress=False, log=log)


# -- the sweep directory -----------------------------------------------------------------

def check_sweep_dir(sweep_dir: Path, spec: SweepSpec) -> bool:
    """Refuse a sweep directory made for another sweep (or holding other files); returns
    whether it already holds this sweep."""
    sweep_dir = Path(sweep_dir)
    record = sweep_dir / SWEEP_FILE
    if record.is_file():
        try:
            saved = json.loads(record.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{record} cannot be read ({err}); choose a new --sweep-dir.") from None
        current = spec.to_dict()
        # Options added to the package since the sweep began (absent from its record) keep
        # their defaults, so they do not count as a change; "auto" settings count as resolved.
        saved["base"] = _resolved(saved.get("base", {}))
        current["base"] = {section: {k: v for k, v in table.items() if k in saved["base"].get(section, {})}
                           for section, table in _resolved(current["base"]).items()}
        changed = sorted(k for k in current if _canonical(saved.get(k)) != _canonical(current[k]))
        if changed:
            raise ConfigError(f"{sweep_dir} holds a different sweep (its {', '.join(changed)} differ); rerun it with "
                              "the command that made it, or choose a new --sweep-dir.")
        return True
    if sweep_dir.exists() and any(not p.name.startswith(".") for p in sweep_dir.iterdir()):
        raise ConfigError(f"{sweep_dir} is not empty and holds no {SWEEP_FILE}; choose a new --sweep-dir.")
    return False


def _resolved(base: dict) -> dict:
    """A base configuration with its automatic choices made (binarize "auto"), when it validates."""
    try:
        return Config.from_dict(base, source=SWEEP_FILE).validate(check_effect=False).to_dict()
    except ConfigError:
        return base


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def load_spec(sweep_dir: Path) -> SweepSpec:
    record = Path(sweep_dir) / SWEEP_FILE
    if not record.is_file():
        raise ConfigError(f"{sweep_dir} is not a sweep directory (it has no {SWEEP_FILE}).")
    return SweepSpec.from_dict(json.loads(record.read_text()))


def create_sweep(spec: SweepSpec, sweep_dir: Path, storage: str | None = None,
                 log: Callable[[str], None] = print):
    """Check everything, then create (or reopen) the sweep directory and its study and
    queue what is left to do; returns the study. Nothing is written if a check fails."""
    from pyro_vae.outputs import check_output
    from pyro_vae.runs import write_json

    check_output(Path(sweep_dir) / SWEEP_FILE, "--sweep-dir", own_record=True)  # a file in the way; missing folders are made
    existing = check_sweep_dir(sweep_dir, spec)
    optuna_module()
    if spec.base.train.mlflow or True in spec.grid.get("mlflow", ()):
        from pyro_vae.experiments.tracking import check_mlflow

        check_mlflow()
    _check_data(spec)
    # A --storage URL is opened before anything is written: one that cannot be opened
    # leaves no sweep directory behind (the default storage lives in the directory itself).
    name = study_name(spec, sweep_dir)
    study = open_study(spec, sweep_dir, storage) if storage else None
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if not existing:
        write_json(sweep_dir / SWEEP_FILE, {**spec.to_dict(), "study": name})
    study = study or open_study(spec, sweep_dir, storage)
    prepare_queue(study, spec, log)
    return study


def run_sweep(spec: SweepSpec, sweep_dir: Path, storage: str | None = None, workers: int = 1,
              log: Callable[[str], None] = print, worker_command: list[str] | None = None) -> list[dict]:
    """Run the whole sweep (or what is left of it) with ``workers`` processes and write
    ``results.csv`` (and, for a grid, ``sweep.png``). Returns the results' rows."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}.")
    sweep_dir = Path(sweep_dir)
    study = create_sweep(spec, sweep_dir, storage, log)
    children = []
    for index in range(1, workers):
        command = (worker_command or [sys.executable, "-m", "pyro_vae.cli", "sweep", "--sweep-dir", str(sweep_dir),
                                      "--join"]) + ["--worker-index", str(index)]
        if storage:
            command += ["--storage", storage]
        children.append(subprocess.Popen(command))
    try:
        run_worker(spec, sweep_dir, storage, 0, log)
    finally:
        codes = [child.wait() for child in children]
    if any(codes):
        log(f"warning: a worker process ended with exit code {max(codes)}; rerun the command to finish the sweep")
    rows = write_results(study, spec, sweep_dir)
    complete = sum(row["state"] == "COMPLETE" for row in rows)
    if spec.is_grid and complete > 1:
        from pyro_vae.experiments.compare import collect_runs, plot_sweep_figure

        plot_sweep_figure(collect_runs([sweep_dir]), sweep_dir / "sweep.png", spec.metric)
    elif spec.is_grid and complete == 1:
        log("sweep.png not drawn: one run has finished, and the figure compares runs.")
    return rows


def _check_data(spec: SweepSpec) -> None:
    """Open the base data set once, so a missing data set stops the sweep before any trial
    (unless the data set itself is swept)."""
    from pyro_vae.runs import open_dataset

    data_keys = set(field_types(SECTIONS["data"]))
    if spec.base.data.dataset != "image-folder" and not (data_keys & (set(spec.grid) | set(spec.search))):
        open_dataset(spec.config_for({"seed": spec.seeds[0]}))


#: summary.json's numbers in results.csv, each mean followed by its standard error over the
#: images, and the test ELBO's kind of number, unit and bits/dim.
RESULT_FIELDS = ("epochs", "best_epoch", "stopped_early", "best_valid_criterion", "test_elbo", "test_elbo_stderr",
                 "kind", "unit", "bits_per_dim", "bits_per_dim_stderr", "test_reconstruction",
                 "test_reconstruction_stderr", "test_kl", "test_kl_stderr", "valid_accuracy", "valid_accuracy_stderr",
                 "test_accuracy", "test_accuracy_stderr", "train_seconds_this_session")


def write_results(study, spec: SweepSpec, sweep_dir: Path) -> list[dict]:
    """``results.csv``: each finished run's settings, the sweep's metric and the numbers of
    its ``summary.json``; a point that only failed gets a row with the error."""
    from pyro_vae.inference.checkpoint import atomic_write_text
    from pyro_vae.runs import SUMMARY

    optuna = optuna_module()
    state = optuna.trial.TrialState
    keys = list(spec.grid or spec.search) + ["seed"]
    latest: dict[str, Any] = {}
    for trial in sorted(_trials_of(study), key=lambda t: t.number):
        if trial.state == state.COMPLETE or (trial.state == state.FAIL and not trial.user_attrs.get("requeued")):
            if latest.get(trial.user_attrs["run_dir"]) is None or latest[trial.user_attrs["run_dir"]].state != state.COMPLETE:
                latest[trial.user_attrs["run_dir"]] = trial
    rows = []
    for name, trial in latest.items():
        row = {"trial": trial.number, "run_dir": name, "state": trial.state.name}
        row.update({k: trial.params.get(k, "") for k in keys})
        summary_path = sweep_dir / name / SUMMARY
        summary = json.loads(summary_path.read_text()) if trial.state == state.COMPLETE and summary_path.is_file() else {}
        # the metric from the summary, as the row's other numbers: Optuna's value is the one told at
        # the trial's end, stale once the run was trained on (train --resume RUN --epochs N)
        row[spec.metric] = metric_value(summary, spec.metric) if summary else (
            trial.value if trial.state == state.COMPLETE else "")
        row.update({k: summary.get(k, "") for k in RESULT_FIELDS})
        se = metric_stderr(summary, spec.metric) if summary else None
        row[f"{spec.metric}_stderr"] = "" if se is None else se
        row["error"] = trial.user_attrs.get("error", "")
        rows.append(row)
    rows.sort(key=lambda r: r["trial"])
    out = io.StringIO()
    columns = ["trial", "run_dir", "state", *keys, spec.metric, f"{spec.metric}_stderr",
               *[f for f in RESULT_FIELDS if f != spec.metric], "error"]
    writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(columns)), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(sweep_dir / RESULTS, out.getvalue())
    return rows
