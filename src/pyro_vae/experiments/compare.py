r"""Compare runs: a table of what differs and what came out, paired differences of log p(x)
on the same test images, overlaid curves and a sweep's figure.

Seeds are aggregated: runs whose settings differ only in ``seed`` form one row, with each
number given as its mean over the seeds ± the standard error of that mean,
:math:`s / \sqrt{n}` with :math:`s` the sample standard deviation over the n seeds.

Paired difference. Two runs evaluated with ``evaluate --k K`` on the same images give
per-example estimates :math:`a_i, b_i` of log p(x_i); on the images both evaluated,
:math:`d_i = b_i - a_i` has mean :math:`\bar d` and standard error
:math:`s_d / \sqrt{n}`. The images' own spread cancels in :math:`d_i`, so this is far
tighter than the difference of the two means, whose standard error is about
:math:`\sqrt{(s_a^2 + s_b^2) / n}`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pyro_vae.config import Config
from pyro_vae.errors import PyroVAEError
from pyro_vae.experiments.labels import FIDELITY_FILE

#: Per-example log p(x) saved by ``evaluate --k`` beside its JSON: ``loglik.json`` ->
#: ``loglik_examples.npz`` with arrays ``index`` (int64, image numbers in the split) and
#: ``log_likelihood`` (float64, nats), and the ``split``, ``k`` and ``dataset`` it came from.
EXAMPLES_SUFFIX = "_examples.npz"


# -- per-example values ------------------------------------------------------------------

def examples_path(json_path: Path) -> Path:
    json_path = Path(json_path)
    return json_path.with_name(json_path.stem + EXAMPLES_SUFFIX)


def save_examples(json_path: Path, log_likelihood, indices, split: str, k: int, dataset: str) -> Path:
    """Write the per-example log p(x) ``[N]`` and the images' indices ``[N]`` beside
    ``json_path`` (atomically); returns the file's path."""
    from pyro_vae.inference.checkpoint import atomic_write_bytes

    values = np.asarray(log_likelihood, dtype=np.float64).reshape(-1)
    index = np.asarray(indices, dtype=np.int64).reshape(-1)
    if values.shape != index.shape:
        raise ValueError(f"{values.shape[0]} values for {index.shape[0]} indices")
    path = examples_path(json_path)
    atomic_write_bytes(path, lambda handle: np.savez(handle, index=index, log_likelihood=values,
                                                     split=np.array(split), k=np.array(k), dataset=np.array(dataset)))
    return path


@dataclass
class Examples:
    """Per-example log p(x) of one run: ``index`` and ``log_likelihood`` ``[N]``."""

    index: np.ndarray
    log_likelihood: np.ndarray
    split: str
    k: int
    dataset: str

    @classmethod
    def load(cls, path: Path) -> Examples:
        try:
            with np.load(path) as data:
                return cls(data["index"], data["log_likelihood"], str(data["split"]), int(data["k"]),
                           str(data["dataset"]))
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:  # a truncated .npz: BadZipFile
            raise PyroVAEError(f"cannot read per-example values from {path} ({err}); rerun evaluate --k.") from None


@dataclass
class PairedDifference:
    """Mean of b_i - a_i over the n images both runs evaluated, and its standard error."""

    mean: float
    stderr: float
    n: int
    unpaired_stderr: float  # what the difference of the two means would have had


def paired_difference(a: Examples, b: Examples) -> PairedDifference:
    """``b`` minus ``a`` on the images both evaluated (matched by index)."""
    if a.split != b.split or a.dataset != b.dataset:
        raise PyroVAEError(f"the runs were evaluated on different images ({a.dataset} {a.split} and "
                           f"{b.dataset} {b.split}); evaluate both on the same split.")
    common, ia, ib = np.intersect1d(a.index, b.index, assume_unique=True, return_indices=True)
    if len(common) < 2:
        raise PyroVAEError("the two runs share fewer than 2 evaluated images; evaluate both on the same images "
                           "(the same --limit or subset).")
    x, y = a.log_likelihood[ia], b.log_likelihood[ib]
    d = y - x
    n = len(d)
    return PairedDifference(float(d.mean()), float(d.std(ddof=1) / math.sqrt(n)), n,
                            float(math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / n)))


# -- reading runs ------------------------------------------------------------------------

@dataclass
class RunRecord:
    """One finished run: its settings (bare config keys), summary, and log p(x) if evaluated."""

    run_dir: Path
    settings: dict
    summary: dict
    loglik: dict | None = None
    history: list = field(default_factory=list)
    fidelity: dict | None = None  # label_fidelity.json of ``evaluate --label-fidelity``
    #: The settings the run does not use (an M2 run's ``aux_dim``): a blank cell in the table.
    unused: frozenset = frozenset()
    #: A ``loglik.json`` of another split than the test images (``evaluate --split valid --k K``):
    #: kept out of the test log p(x) column and the paired differences, and named in a note.
    other_split_loglik: dict | None = None

    def examples(self) -> Examples | None:
        if self.other_split_loglik is not None:  # its per-example values are of the same other split
            return None
        path = examples_path(self.run_dir / "loglik.json")
        return Examples.load(path) if path.is_file() else None


def _flat_settings(config: Config) -> dict:
    """The run's settings as it used them (:func:`~pyro_vae.runs.settings_in_effect`: no
    ``k`` for the ELBO, M1+M2's own likelihood, M2's own objective), lists joined."""
    from pyro_vae.runs import settings_in_effect

    return {key: ",".join(map(str, value)) if isinstance(value, list) else value
            for key, value in settings_in_effect(config).items()}


def unused_settings(config: Config) -> frozenset:
    """The bare names of the settings a run of ``config`` does not use, whatever their values
    (:func:`~pyro_vae.config.unused_options`): recorded at their defaults, but no part of the run."""
    from pyro_vae.config import unused_options

    return frozenset(key.split(".", 1)[1] for key in unused_options(config))


def read_run(run_dir: Path) -> RunRecord:
    from pyro_vae.runs import SUMMARY, read_json, read_metrics, read_run_config

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    summary_path = run_dir / SUMMARY
    if not summary_path.is_file():
        raise PyroVAEError(f"{run_dir} has no {SUMMARY} yet (training has not finished); finish it with "
                           f"pyro-vae train --resume {run_dir}, or leave it out.")
    loglik_path = run_dir / "loglik.json"
    fidelity_path = run_dir / FIDELITY_FILE
    summary = read_json(summary_path,
                        f"write it again from the run's checkpoint with pyro-vae train --resume {run_dir}")
    loglik = (read_json(loglik_path, f"score the run again with pyro-vae evaluate {run_dir} --k K")
              if loglik_path.is_file() else None)
    fidelity = (read_json(fidelity_path, f"measure it again with pyro-vae evaluate {run_dir} --label-fidelity")
                if fidelity_path.is_file() else None)
    other_split = None
    if loglik is not None and loglik.get("split", "test") != "test":  # not a test log p(x): no such column's number
        other_split, loglik = loglik, None
    return RunRecord(run_dir, _flat_settings(config), summary, loglik, read_metrics(run_dir), fidelity,
                     unused_settings(config), other_split)


def collect_runs(paths: list[Path]) -> list[RunRecord]:
    """The finished runs named: run directories, and sweep directories (their finished runs)."""
    from pyro_vae.experiments.sweep import SWEEP_FILE
    from pyro_vae.inference.checkpoint import LAST
    from pyro_vae.runs import SUMMARY, is_run_dir

    records = []
    for path in map(Path, paths):
        if (path / SWEEP_FILE).is_file():
            records += [read_run(child) for child in sorted(path.iterdir())
                        if is_run_dir(child) and (child / SUMMARY).is_file()]
        elif is_run_dir(path):
            records.append(read_run(path))
        elif (path / LAST).is_file() and (path / SUMMARY).is_file():  # fit() without config=: no config.toml
            raise PyroVAEError(f"{path} has a checkpoint and a summary but no config.toml, where compare reads a "
                               "run's settings (a run of fit() without config=); fit it with config= (the Config its "
                               "model was built from), or read its summary.json in Python.")
        else:
            raise PyroVAEError(f"{path} is neither a run directory nor a sweep directory; give the --run-dir of a "
                               "training run or the --sweep-dir of a sweep.")
    if not records:
        raise PyroVAEError("no finished runs to compare (none has a summary.json yet).")
    seen = {}
    for record in records:  # one run counted twice would pass for two seeds of its setting
        where = record.run_dir.resolve()
        if where in seen:
            raise PyroVAEError(f"the run {record.run_dir} is given twice (as {seen[where]} too, or inside a sweep "
                               "directory given as well); name each run once.")
        seen[where] = record.run_dir
    return records


def unfinished_notes(paths: list[Path]) -> list[str]:
    """A note per sweep directory among ``paths`` whose run directories include some with no
    summary.json (:func:`collect_runs` leaves them out of the table: a grid point still training,
    stopped, or failed), naming them and how to finish them; empty where every run finished."""
    from pyro_vae.experiments.sweep import SWEEP_FILE
    from pyro_vae.runs import SUMMARY, is_run_dir

    notes = []
    for path in map(Path, paths):
        if not (path / SWEEP_FILE).is_file():
            continue
        unfinished = [child for child in sorted(path.iterdir())
                      if is_run_dir(child) and not (child / SUMMARY).is_file()]
        if unfinished:
            notes.append(f"Note: not in the table, with no {SUMMARY} yet (still training, stopped or failed): "
                         f"{', '.join(map(str, unfinished))} (of the sweep {path}); finish each with the same sweep "
                         "command again, or `pyro-vae train --resume RUN`.")
    return notes


def differing_keys(records: list[RunRecord]) -> list[str]:
    """The settings whose values are not the same in every run, in config order, but those that
    change only what a run logs or draws, or how fast it reads its images
    (:data:`~pyro_vae.experiments.sweep.UNSWEPT_KEYS`): they made a column, and runs that differ
    only there rows of their own, though their models and numbers are the same."""
    from pyro_vae.experiments.sweep import UNSWEPT_KEYS

    keys = [k for k in records[0].settings if k not in UNSWEPT_KEYS]
    return [k for k in keys if len({json.dumps(r.settings.get(k)) for r in records}) > 1]


# -- the table ---------------------------------------------------------------------------

def is_autoencoder(summary: dict) -> bool:
    """Whether the run is a plain autoencoder (``--model ae``, or ``fit`` of one): its
    metrics' "valid_elbo" is its reconstruction term alone, which bounds nothing."""
    return summary.get("model") == "ae" or str(summary.get("selection", "")).startswith(
        "best validation reconstruction")


def _valid_elbo(summary: dict) -> float | None:
    if is_autoencoder(summary):  # its reconstruction term: a column of its own
        return None
    return (summary.get("best_epoch_metrics") or {}).get("valid_elbo")


def _autoencoder_metric(summary: dict, key: str) -> float | None:
    if not is_autoencoder(summary):
        return None
    return (summary.get("best_epoch_metrics") or {}).get(key) if key.startswith("valid") else summary.get(key)


def _test_elbo_record(record) -> dict | None:
    """summary.json's test ELBO fields (it records the ELBO's kind and bits/dim beside it)."""
    return record.summary if record.summary.get("test_elbo") is not None else None


#: What a plain autoencoder's validation or test number is, where a bound's kind would be said.
AUTOENCODER_NUMBER = "an autoencoder's reconstruction log p(x | code): not a bound on log p(x)"
#: The columns of a plain autoencoder's reconstruction term (kept out of the ELBO columns).
AE_VALID, AE_TEST = "valid recon (autoencoder)", "test recon (autoencoder)"
#: The note under a table with an autoencoder's row.
AE_NOTE = (f"Note: {AE_VALID} and {AE_TEST} are an autoencoder's reconstruction log p(x | code): not an ELBO "
           "and not a bound on log p(x) (an autoencoder has none), so they cannot be ranked against the ELBOs "
           "and log p(x) of the other rows.")

def _autoencoder_test_record(record) -> dict | None:
    """An autoencoder's summary.json, which holds its test reconstruction term, that number's
    "kind" and its quantity (log p(x | code); a summary that predates them: kind unknown)."""
    from pyro_vae.inference.kinds import RECONSTRUCTION

    summary = record.summary
    if not is_autoencoder(summary) or summary.get("test_reconstruction") is None:
        return None
    return {**summary, "quantity": summary.get("quantity") or RECONSTRUCTION}


#: The numbers that carry a kind: (column, the JSON that holds it and its "kind" and
#: "bits_per_dim", or None where the run has no such number).
KINDED = {"test ELBO": _test_elbo_record, "test log p(x)": lambda r: r.loglik, AE_TEST: _autoencoder_test_record}

#: (column, how to read it from a run): epochs, seconds, nats per example, bits per dimension.
QUANTITIES = [
    ("epochs", lambda r: r.summary.get("epochs")),
    ("best epoch", lambda r: r.summary.get("best_epoch")),
    ("train s", lambda r: training_seconds(r.summary)),
    ("valid ELBO", lambda r: _valid_elbo(r.summary)),
    ("test ELBO", lambda r: r.summary.get("test_elbo")),
    ("test ELBO bits/dim", lambda r: (_test_elbo_record(r) or {}).get("bits_per_dim")),
    # a plain autoencoder's reconstruction log p(x | code): not an ELBO, nor a bound on log p(x)
    (AE_VALID, lambda r: _autoencoder_metric(r.summary, "valid_reconstruction")),
    (AE_TEST, lambda r: _autoencoder_metric(r.summary, "test_reconstruction")),
    ("test log p(x)", lambda r: (r.loglik or {}).get("log_likelihood_mean")),
    ("test log p(x) bits/dim", lambda r: (r.loglik or {}).get("bits_per_dim")),
    ("test accuracy", lambda r: r.summary.get("test_accuracy")),
    # the same classifier trained on the labels alone: what the unlabelled images added is the difference
    ("baseline test accuracy", lambda r: r.summary.get("baseline_test_accuracy")),
    # evaluate --label-fidelity: shares judged by an independent classifier of real images
    ("label fidelity (prior)", lambda r: ((r.fidelity or {}).get("prior") or {}).get("fidelity")),
    ("label fidelity (style grid)", lambda r: (_test_fidelity(r).get("style_grid") or {}).get("fidelity")),
    ("z probe accuracy", lambda r: _test_fidelity(r).get("z_probe_accuracy")),
]

#: A run's own standard error of a quantity (over the images it was measured on): the one
#: shown for a row of a single run, which has no spread over seeds.
OWN_STDERR = {
    "valid ELBO": lambda r: (r.summary.get("best_epoch_metrics") or {}).get("valid_elbo_stderr"),
    "test ELBO": lambda r: r.summary.get("test_elbo_stderr"),
    AE_VALID: lambda r: _autoencoder_metric(r.summary, "valid_reconstruction_stderr"),
    AE_TEST: lambda r: _autoencoder_metric(r.summary, "test_reconstruction_stderr"),
    "test ELBO bits/dim": lambda r: (_test_elbo_record(r) or {}).get("bits_per_dim_stderr"),
    "test log p(x)": lambda r: (r.loglik or {}).get("log_likelihood_stderr"),
    "test log p(x) bits/dim": lambda r: (r.loglik or {}).get("bits_per_dim_stderr"),
    "test accuracy": lambda r: r.summary.get("test_accuracy_stderr"),  # binomial
    "baseline test accuracy": lambda r: r.summary.get("baseline_test_accuracy_stderr"),  # binomial
    # evaluate --label-fidelity's shares, binomial over the images judged
    "label fidelity (prior)": lambda r: ((r.fidelity or {}).get("prior") or {}).get("stderr"),
    "label fidelity (style grid)": lambda r: (_test_fidelity(r).get("style_grid") or {}).get("stderr"),
    "z probe accuracy": lambda r: _test_fidelity(r).get("z_probe_accuracy_stderr"),
}


def fidelity_split(record: RunRecord) -> str:
    """The split whose images a run's label_fidelity.json encoded for its style grid and scored
    its z probe on (``evaluate --label-fidelity --split``); "test" for records from before --split."""
    return ((record.fidelity or {}).get("style_grid") or {}).get("split", "test")


def _test_fidelity(record: RunRecord) -> dict:
    """A run's label fidelity record where its style grid and z probe are of the test images,
    else ``{}``: those columns hold test numbers (a mean over seeds would mix the splits'), and
    the prior samples' fidelity, drawn from p(z | y), reads no split."""
    return (record.fidelity or {}) if fidelity_split(record) == "test" else {}


def _loglik_scope(record: RunRecord) -> tuple:
    """The K and the images of a run's log p(x) ("40 of test, random" for a --limit subset)."""
    loglik = record.loglik or {}
    images = loglik.get("examples")
    if loglik.get("subset") not in (None, "all"):
        images = f"{images} of {loglik.get('split', 'test')}, {loglik['subset']}"
    return loglik.get("k"), images


#: What a number's kind cell says when its JSON predates the "kind" field.
UNKNOWN_KIND = "unknown (recorded before kinds)"


def number_kind_of(record: RunRecord, quantity: str) -> str | None:
    """The kind of ``quantity`` ("test ELBO" or "test log p(x)") of a run, one of
    :data:`~pyro_vae.inference.kinds.KINDS`; :data:`UNKNOWN_KIND` when its JSON does not
    record one (never guessed from the settings); None when the run has no such number."""
    from pyro_vae.inference.kinds import KINDS

    fields = KINDED[quantity](record)
    if fields is None:
        return None
    kind = fields.get("kind")
    return kind if kind in KINDS else UNKNOWN_KIND


def quantity_of(record: RunRecord, quantity: str) -> str | None:
    """What ``quantity`` ("test ELBO" or "test log p(x)") of a run bounds or estimates
    (:func:`~pyro_vae.inference.kinds.quantity`: log p(x), or the conditional VAE's
    log p(x | y), or quadrant completion's log p(x_m | x_g)): as its JSON records it, or, for
    a JSON that predates the field, as the run's recorded model makes it; None when the run
    has no such number."""
    from pyro_vae.inference.kinds import quantity as model_quantity

    fields = KINDED[quantity](record)
    if fields is None:
        return None
    if fields.get("quantity"):
        return fields["quantity"]
    given = record.settings.get("given_quadrants")
    return model_quantity(record.settings.get("model") or "vae", int(given) if given else 1)


def kind_cell(kind: str, quantity: str) -> str:
    """A number's kind as the table shows it: with its quantity where that is not log p(x)."""
    from pyro_vae.inference.kinds import MARGINAL

    return kind if quantity == MARGINAL else f"{quantity}: {kind}"


def pair_verdict(kind_a: str, kind_b: str, quantity_a: str | None = None, quantity_b: str | None = None):
    """:func:`~pyro_vae.inference.kinds.comparable`, with an unknown kind never comparable
    (numbers of different quantities are not, whatever their kinds)."""
    from pyro_vae.inference.kinds import MARGINAL, Comparison, comparable, different_quantities

    quantity_a, quantity_b = quantity_a or MARGINAL, quantity_b or MARGINAL
    if quantity_a != quantity_b:
        return different_quantities(quantity_a, quantity_b)
    if UNKNOWN_KIND in (kind_a, kind_b):
        return Comparison(False, "the kind of number of one of them is unknown (its JSON predates the \"kind\" "
                                 "field), so they cannot be ranked; a log p(x) gets its kind from pyro-vae evaluate --k K")
    return comparable(kind_a, kind_b, quantity_a, quantity_b)


def run_verdict(a: RunRecord, b: RunRecord, quantity: str):
    """Whether two runs' ``quantity`` ("test ELBO" or "test log p(x)") can be ranked: scored on
    the same data set (the kinds of number say nothing of which images), then
    :func:`pair_verdict` of their kinds and quantities, then binarized alike where one was
    thresholded (a dynamic and a static run score draws of the same Bernoulli images)."""
    from pyro_vae.inference.kinds import Comparison

    data_a, data_b = a.settings.get("dataset"), b.settings.get("dataset")
    if data_a != data_b:
        return Comparison(False, f"one is scored on {data_a} images and the other on {data_b} images: different "
                                 "data sets, so the numbers cannot be ranked")
    for key in OWN_DATA_KEYS if data_a in OWN_DATA_SETS else ():  # your own images: which, at what size
        value_a, value_b = a.settings.get(key), b.settings.get(key)
        if value_a != value_b and not (key in a.unused and key in b.unused):
            return Comparison(False, f"one is scored on {data_a} images with {key}={value_a} and the other with "
                                     f"{key}={value_b}: other images or other pixels, so the numbers cannot be ranked")
    verdict = pair_verdict(number_kind_of(a, quantity) or UNKNOWN_KIND, number_kind_of(b, quantity) or UNKNOWN_KIND,
                           quantity_of(a, quantity), quantity_of(b, quantity))
    binarized = binarization_of(a), binarization_of(b)
    if verdict.ok and binarized[0] != binarized[1] and "threshold" in binarized:
        # a mass on binary data either way, but of other 0/1 images: thresholding keeps each
        # pixel's likelier value, where a dynamic or static draw flips it with its grey level
        return Comparison(False, "one is scored on images thresholded at 0.5 (binarize threshold) and the other on "
                                 "images drawn as Bernoulli(pixel) (binarize dynamic or static): different binary "
                                 "data, the thresholded far more predictable, so the numbers cannot be ranked")
    return verdict


#: The data sets read from your own files, and the settings that say which images they are and
#: at what size: two runs of ``image-folder`` at image_size 16 and 24 score 768 and 1,728 pixel
#: values per image, and two of ``idx`` on two folders score other images.
OWN_DATA_SETS = ("idx", "image-folder")
OWN_DATA_KEYS = ("data_dir", "image_size", "image_mode")


def binarization_of(record: RunRecord) -> str:
    """How a run's images were binarized (none, dynamic, static or threshold); "none" where
    the data set's pixels are used as they are (binarized MNIST's fixed 0/1 draw)."""
    if "binarize" in record.unused:
        return "none"
    return str(record.settings.get("binarize") or "none")


def scored_images_draw(record: RunRecord) -> str:
    """Which 0/1 images a run's test log p(x) scored: a static binarization draws the test split
    with the run's seed, so two static runs of other seeds (or a static and a dynamic run, whose
    test images are drawn once with a fixed seed) scored other images under the same numbers."""
    binarized = binarization_of(record)
    return f"static with seed {record.settings.get('seed')}" if binarized == "static" else binarized


def mean_and_stderr(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard error over ``values`` (None for a single value)."""
    array = np.asarray(values, dtype=np.float64)
    if len(array) < 2:
        return float(array.mean()), None
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(len(array)))


@dataclass
class Group:
    """Runs that differ only in their seed, one per seed (``repeats``: further runs of a seed
    already there, such as a point a sweep's sampler drew twice, counted once)."""

    settings: dict  # the differing settings (without seed)
    runs: list[RunRecord]
    repeats: list[RunRecord] = field(default_factory=list)

    def values(self, read) -> list[float]:
        return [float(v) for v in (read(r) for r in self.runs) if v is not None]

    def lacking(self, read) -> list[RunRecord]:
        """The runs without ``read``'s number where some others of the group have it (a log
        p(x) evaluated for some seeds): empty where all or none have it."""
        missing = [r for r in self.runs if read(r) is None]
        return missing if len(missing) < len(self.runs) else []


def group_runs(records: list[RunRecord]) -> tuple[list[str], list[Group]]:
    """The differing keys (seed aside) and the runs grouped by them, in first-seen order."""
    keys = [k for k in differing_keys(records) if k != "seed"]
    groups: dict[str, Group] = {}
    for record in records:
        settings = {k: record.settings.get(k) for k in keys}
        group = groups.setdefault(json.dumps(settings), Group(settings, []))
        # The same settings and seed again train the same model: one more seed it is not.
        same_seed = any(run.settings.get("seed") == record.settings.get("seed") for run in group.runs)
        (group.repeats if same_seed else group.runs).append(record)
    return keys, list(groups.values())


#: A setting's column where its key is also the name of a quantity's column: the epochs a
#: run may train (``--epochs``) beside the epochs it trained (fewer when --patience stopped it).
SETTING_COLUMNS = {"epochs": "max epochs"}


def setting_column(key: str) -> str:
    return SETTING_COLUMNS.get(key, key)


def compare_table(records: list[RunRecord]) -> tuple[list[str], list[dict]]:
    """Columns and rows: the differing settings, the number of seeds, and each quantity's
    mean (and standard error over seeds, ``<name> se``) for every group."""
    keys, groups = group_runs(records)
    present = [(name, read) for name, read in QUANTITIES if any(read(r) is not None for r in records)]
    columns = [*map(setting_column, keys), "seeds", "se over"]
    for name, _ in present:
        columns += [name, f"{name} se"]
        if name in KINDED:
            columns.append(f"{name} kind")
        if name == "test log p(x)":
            columns += ["test log p(x) K", "test log p(x) images"]
    rows = []
    for group in groups:
        # A setting a run does not use is left blank (the ADGM's aux_dim beside an M2 run), not
        # shown at the default it was recorded at; the runs of a group share their settings.
        row = {setting_column(key): None if key in group.runs[0].unused else value
               for key, value in group.settings.items()}
        row["seeds"] = len(group.runs)
        single = len(group.runs) == 1  # no spread over seeds: the run's own, over its images
        row["se over"] = "the images (one run)" if single else f"the {len(group.runs)} seeds"
        for name, read in present:
            # A mean over the seeds that have the number would pass for one over all the row's
            # seeds (one seed's value for it, with no uncertainty): left out, with a note.
            values = [] if group.lacking(read) else group.values(read)
            mean, se = mean_and_stderr(values) if values else (None, None)
            if single and name in OWN_STDERR:
                se = OWN_STDERR[name](group.runs[0])
            row[name], row[f"{name} se"] = mean, se
            if name == "test log p(x)":
                scopes = [_loglik_scope(r) for r in group.runs if r.loglik is not None]
                for i, column in enumerate(("test log p(x) K", "test log p(x) images")):
                    row[column] = "; ".join(dict.fromkeys(str(scope[i]) for scope in scopes)) or None
            if name in KINDED:
                kinds = dict.fromkeys(kind_cell(number_kind_of(r, name), quantity_of(r, name)) for r in group.runs
                                      if number_kind_of(r, name) is not None)
                row[f"{name} kind"] = "; ".join(kinds) or None
        rows.append(row)
    return columns, rows


def training_seconds(summary: dict) -> float | None:
    """The wall-clock seconds a run spent training, over every session of a resumed run: the
    sum of ``seconds_per_epoch`` (each epoch's training steps). ``train_seconds_this_session``,
    shown before, counted the last session alone, so a run resumed for its last epoch looked
    many times cheaper than the same run trained in one go."""
    per_epoch = summary.get("seconds_per_epoch")
    if isinstance(per_epoch, list) and per_epoch:
        return float(sum(per_epoch))
    return summary.get("train_seconds_this_session")  # a summary without the per-epoch list


def incomparable_pairs(groups: list[Group], labels: list[str], quantity: str) -> dict[str, list[str]]:
    """The groups (named by ``labels``, one per group) whose ``quantity`` ("test ELBO" or
    "test log p(x)") cannot be ranked against each other's, by reason sentence:
    ``{reason: ["row 1 and row 2", "the seeds of row 3"]}``; empty when all can be ranked."""
    kinds = []  # (group label, run) of every run with the number
    for label, group in zip(labels, groups):
        kinds += [(label, r) for r in group.runs if number_kind_of(r, quantity) is not None]
    reasons: dict[str, list[str]] = {}
    for i, (label_a, run_a) in enumerate(kinds):
        for label_b, run_b in kinds[i + 1:]:
            verdict = run_verdict(run_a, run_b, quantity)
            if not verdict.ok:
                pairs = reasons.setdefault(verdict.reason, [])
                pair = f"{label_a} and {label_b}" if label_a != label_b else f"the seeds of {label_a}"
                if pair not in pairs:
                    pairs.append(pair)
    return reasons


def kind_notes(records: list[RunRecord]) -> list[str]:
    """One note per quantity whose rows are not all pairwise comparable: which rows (by
    their differing settings) and each reason sentence once. Empty when all can be ranked."""
    keys, groups = group_runs(records)
    labels = [f"row {number}" + (f" ({_label(group.settings, keys, group.runs[0].unused)})" if keys else "")
              for number, group in enumerate(groups, start=1)]
    notes = []
    for quantity in KINDED:
        for reason, pairs in incomparable_pairs(groups, labels, quantity).items():
            paired = " No paired difference is taken between them." if quantity == "test log p(x)" else ""
            # the valid ELBO is the same run's bound on the same kind of data: its column too
            named = "test ELBO (and valid ELBO, of the same kind)" if quantity == "test ELBO" else quantity
            notes.append(f"Note: {named} is not comparable between {'; '.join(pairs)}: {reason}.{paired}")
    notes += _within_row_notes(labels, groups)
    if any(is_autoencoder(r.summary) for r in records):
        notes.append(AE_NOTE)
    for group in groups:
        for repeat in group.repeats:
            first = next(r for r in group.runs if r.settings.get("seed") == repeat.settings.get("seed"))
            notes.append(f"Note: {repeat.run_dir} has the settings and seed of {first.run_dir} (a sweep's sampler "
                         "may draw a point twice), so it is counted once, as that run, not as another seed.")
    notes += [note for note in map(stale_loglik_note, records) if note]
    notes += [note for note in map(other_split_note, records) if note]
    notes += [note for note in map(other_split_fidelity_note, records) if note]
    notes += [note for note in map(other_checkpoint_note, records) if note]
    notes += missing_seed_notes(groups, keys)
    ks = sorted({int(r.loglik["k"]) for r in records if r.loglik is not None and r.loglik.get("k") is not None})
    if len(ks) > 1:  # the paired table refuses such pairs; the table's means need the same word
        notes.append(f"Note: test log p(x) was estimated with different numbers of importance samples (K = "
                     f"{', '.join(map(str, ks))}; the K column); the estimate rises with K, so numbers of different "
                     "K cannot be ranked fairly: evaluate every run with the same --k.")
    return notes


#: The columns whose numbers are log-likelihoods or bounds on one, in nats per example.
NATS_COLUMNS = ("valid ELBO", "test ELBO", AE_VALID, AE_TEST, "test log p(x)")


def unit_notes(columns: list[str]) -> list[str]:
    """The line under the table that says the unit of its log-likelihood columns, the bits/dim
    conversion and what its ± are (the cells hold bare numbers); empty where it has none."""
    shown = [c for c in NATS_COLUMNS if c in columns]
    if not shown:
        return []
    named = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"
    bits = " (bits/dim: -nats / (D ln 2), D the pixel values scored)" if any(
        c.endswith("bits/dim") for c in columns) else ""
    return [f"Units: {named} in nats per example{bits}; each ± is one standard error, over what the "
            "\"se over\" column says."]


#: How a number measured after training is measured for a run (``{run}``: its directory).
MEASURED_BY = {"test log p(x)": "pyro-vae evaluate {run} --k K",
               "label fidelity (prior)": "pyro-vae evaluate {run} --label-fidelity",
               "label fidelity (style grid)": "pyro-vae evaluate {run} --label-fidelity",
               "z probe accuracy": "pyro-vae evaluate {run} --label-fidelity"}


def missing_seed_notes(groups: list[Group], keys: list[str]) -> list[str]:
    """One note per row whose numbers some of its seeds lack (:meth:`Group.lacking`), which
    :func:`compare_table` leaves blank: which numbers, which runs lack them, and how to
    measure them."""
    notes = []
    for number, group in enumerate(groups, start=1):
        names, lacking = [], {}
        for name, read in QUANTITIES:
            runs = group.lacking(read)
            if runs:
                names.append(name)
                lacking.update(dict.fromkeys(r.run_dir for r in runs))
        if not names:
            continue
        label = f"row {number}" + (f" ({_label(group.settings, keys)})" if keys else "")
        commands = dict.fromkeys(MEASURED_BY[name].format(run="RUN") for name in names if name in MEASURED_BY)
        how = f" ({'; '.join(f'`{c}`' for c in commands)})" if commands else ""
        have = len(group.runs) - len(lacking)
        notes.append(f"Note: {label} shows no {', '.join(names)}: {have} of its {len(group.runs)} seeds "
                     f"{'has' if have == 1 else 'have'} them, and a mean over those would pass for one over all "
                     f"{len(group.runs)}; measure them for {', '.join(map(str, lacking))} too{how}, or compare "
                     "the runs one by one.")
    return notes


def _within_row_notes(labels: list[str], groups: list[Group]) -> list[str]:
    """A note where a row's own test ELBO and test log p(x) are of kinds that cannot be ranked:
    a continuous likelihood's ELBO is a density on the grey levels as they are, its log p(x)
    (``evaluate --k``) a dequantized bound on their probability, thousands of nats below it,
    so the row would show an ELBO above the log p(x) it is taken to bound."""
    rows: dict[str, list[str]] = {}  # reason -> the rows it applies to
    for label, group in zip(labels, groups):
        for run in group.runs:
            elbo, loglik = number_kind_of(run, "test ELBO"), number_kind_of(run, "test log p(x)")
            if None in (elbo, loglik) or UNKNOWN_KIND in (elbo, loglik):
                continue
            verdict = pair_verdict(elbo, loglik, quantity_of(run, "test ELBO"), quantity_of(run, "test log p(x)"))
            if not verdict.ok and label not in rows.setdefault(verdict.reason, []):
                rows[verdict.reason].append(label)
    return [f"Note: the test ELBO and the test log p(x) of {'; '.join(labelled)} are not comparable with each "
            f"other: {reason}; that ELBO bounds a number of its own kind, not that log p(x), and may lie above "
            "it." for reason, labelled in rows.items() if labelled]


def other_split_note(record: RunRecord) -> str | None:
    """A note where a run's ``loglik.json`` is a log p(x) of another split than the test images
    (``evaluate --split valid --k K``), which the table leaves out of its test log p(x) column (a
    mean over seeds would mix the splits' numbers); None where it is of the test images or absent."""
    loglik = record.other_split_loglik
    if loglik is None:
        return None
    return (f"Note: the log p(x) of {record.run_dir} (loglik.json) is of {loglik.get('examples')} of its "
            f"{loglik['split']} images, not of the test images that the test log p(x) column holds, so it is left "
            f"out (and from the paired differences); score the test images with {_evaluate_again(record, loglik)}.")


def other_split_fidelity_note(record: RunRecord) -> str | None:
    """A note where a run's label_fidelity.json encoded the style grid's images and scored the z
    probe on another split than the test images (``evaluate --label-fidelity --split valid``):
    those two columns leave it out; None where it is of the test images or absent."""
    split = fidelity_split(record)
    if record.fidelity is None or split == "test":
        return None
    return (f"Note: the style grid and z probe of {record.run_dir} ({FIDELITY_FILE}) are of its {split} images, not "
            "the test images those columns hold, so they are left out (its prior samples' fidelity, which reads no "
            f"images, is shown); measure the test images with `pyro-vae evaluate {record.run_dir} --label-fidelity "
            f"-o {record.run_dir / FIDELITY_FILE}`.")


def stale_loglik_note(record: RunRecord) -> str | None:
    """A note where a run's test log p(x) (``loglik.json``) was measured on a checkpoint that
    is no longer the one it names (the run trained on after ``evaluate``: its best or last
    checkpoint is now another epoch's), so the table would set an old model's log p(x) beside
    the new model's ELBO; None where it is the current one or the JSON does not say."""
    loglik = record.loglik or {}
    measured, checkpoint = loglik.get("checkpoint_epoch"), loglik.get("checkpoint")
    now = {"best": record.summary.get("best_epoch"), "last": record.summary.get("epochs")}.get(checkpoint)
    if measured is None or now is None or measured == now:
        return None
    return (f"Note: the test log p(x) of {record.run_dir} was measured on its {checkpoint} checkpoint when that was "
            f"epoch {measured}, and it is epoch {now} now (the run trained on after); measure it again with "
            f"{_evaluate_again(record, loglik)}.")


def other_checkpoint_note(record: RunRecord) -> str | None:
    """A note where a run's test log p(x) is of its last checkpoint (``evaluate --checkpoint
    last``) and that is another epoch than the best one, whose model the run's test ELBO (and
    every other number of its summary) is of: the row would set two models' numbers side by
    side as one's. None where both are of one epoch, or where the JSON does not say."""
    loglik = record.loglik or {}
    measured, best = loglik.get("checkpoint_epoch"), record.summary.get("best_epoch")
    if loglik.get("checkpoint") != "last" or measured is None or best is None or measured == best:
        return None
    return (f"Note: the test log p(x) of {record.run_dir} is of its last checkpoint (epoch {measured}), and its test "
            f"ELBO of its best (epoch {best}): two models' numbers; score the best with "
            f"{_evaluate_again(record, loglik)}.")


def _evaluate_again(record: RunRecord, loglik: dict) -> str:
    """The command that measures a run's test log p(x) again as its notes give it: the K of
    ``loglik`` (its loglik.json), written where compare reads it."""
    return f"`pyro-vae evaluate {record.run_dir} --k {loglik.get('k')} -o {record.run_dir / 'loglik.json'}`"


#: Decimals shown per quantity in the Markdown table (the CSV keeps full precision).
DECIMALS = {"epochs": 1, "best epoch": 1, "train s": 1, "test accuracy": 4, "baseline test accuracy": 4, "seeds": 0,
            "images": 0,
            "label fidelity (prior)": 4, "label fidelity (style grid)": 4, "z probe accuracy": 4,
            "s.e. of the difference of means": 2, "test ELBO bits/dim": 4, "test log p(x) bits/dim": 4}


#: Counts: a whole mean (one run's, or seeds that agree) is shown as the whole number it is, not "2.0".
WHOLE = frozenset({"epochs", "best epoch"})


def _fmt(value, se=None, decimals: int = 2, whole: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not isinstance(value, bool):
        text = f"{value:.0f}" if whole and value.is_integer() else f"{value:.{decimals}f}"
        return text + (f" ± {se:.{max(decimals, 2)}f}" if se is not None else "")
    return str(value)


def _cell(text: str) -> str:
    """A Markdown table cell: a "|" in it (log p(x | y)) escaped, lest it end the cell."""
    return text.replace("|", "\\|")


def to_markdown(columns: list[str], rows: list[dict], notes: list[str] = ()) -> str:
    """The table for reading: ``mean ± se`` in one cell per quantity (nats per example,
    bits per dimension, seconds, epochs), then ``notes`` (see :func:`kind_notes`)."""
    shown = [c for c in columns if not c.endswith(" se")]
    lines = ["| " + " | ".join(map(_cell, shown)) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        cells = []
        for c in shown:
            value = row.get(c)
            if c in DECIMALS or f"{c} se" in columns:  # a measured quantity, not a setting
                cells.append(_fmt(float(value) if isinstance(value, (int, float)) else value, row.get(f"{c} se"),
                                  DECIMALS.get(c, 2), whole=c in WHOLE))
            else:
                cells.append(str(value) if value is not None else "")
        lines.append("| " + " | ".join(map(_cell, cells)) + " |")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def to_csv(columns: list[str], rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return out.getvalue()


def reference_examples(reference: RunRecord):
    """The reference run's per-example log p(x); refused if it has none."""
    base = reference.examples()
    if reference.other_split_loglik is not None:
        raise PyroVAEError(f"the reference {reference.run_dir}'s log p(x) is of its "
                           f"{reference.other_split_loglik['split']} images, and the paired difference is of test "
                           f"log p(x); run pyro-vae evaluate {reference.run_dir} --k K -o "
                           f"{reference.run_dir / 'loglik.json'} first.")
    if base is None:
        raise PyroVAEError(f"the reference {reference.run_dir} has no per-example log p(x); run "
                           f"pyro-vae evaluate {reference.run_dir} --k K first.")
    return base


def distinct_names(run_dirs: list[Path]) -> list[str]:
    """Each run directory by the fewest of its last path components that no other of
    ``run_dirs`` ends in (``beta=2``, or ``sweep-a/beta=2`` beside ``sweep-b/beta=2``)."""
    parts = [Path(run_dir).resolve().parts for run_dir in run_dirs]
    names = []
    for i, mine in enumerate(parts):
        k = 1
        while k < len(mine) and any(other[-k:] == mine[-k:] for j, other in enumerate(parts) if j != i):
            k += 1
        names.append(str(Path(*mine[-k:])))
    return names


def paired_table(records: list[RunRecord], reference: RunRecord) -> tuple[list[dict], list[tuple[RunRecord, str]]]:
    """Paired difference of log p(x) of every evaluated run against ``reference``, and the
    runs refused because their log p(x) cannot be ranked against the reference's (a
    different kind of number, e.g. binarized and 8-bit data, or an unknown kind; or a
    different quantity, e.g. the conditional VAE's log p(x | y); or estimated with another
    number of importance samples K), each with the reason sentence."""
    base = reference_examples(reference)
    keys = differing_keys(records)
    # the run's folder name alone told apart no two sweeps' runs of one name (two rows "beta=2")
    named = records if any(r is reference for r in records) else [*records, reference]
    names = dict(zip(map(id, named), distinct_names([r.run_dir for r in named])))
    rows, refused = [], []
    for record in records:
        other = record.examples()
        if record is reference or other is None:
            continue
        verdict = run_verdict(reference, record, "test log p(x)")
        if not verdict.ok:
            refused.append((record, verdict.reason))
            continue
        if scored_images_draw(record) != scored_images_draw(reference):  # image i is another 0/1 image in each
            refused.append((record, f"its test images are binarized {scored_images_draw(record)} and the reference's "
                                    f"{scored_images_draw(reference)}, so image i is not the same 0/1 image in both "
                                    "and the differences are not paired; compare runs of one binarization draw"))
            continue
        if other.k != base.k:  # a bias of K's making would pass for the models' difference, with a tight s.e.
            refused.append((record, f"its log p(x) was estimated with K={other.k} importance samples and the "
                                    f"reference's with K={base.k}; the estimate rises with K, so their difference "
                                    "would be partly K's; evaluate both with the same --k"))
            continue
        diff = paired_difference(base, other)
        rows.append({"run": names[id(record)], **{setting_column(k): record.settings.get(k) for k in keys},
                     "images": diff.n, "paired difference": diff.mean, "paired difference se": diff.stderr,
                     "s.e. of the difference of means": diff.unpaired_stderr})
    return rows, refused


# -- figures -----------------------------------------------------------------------------

def _label(settings: dict, keys: list[str], unused: frozenset = frozenset()) -> str:
    """``key=value`` of each of ``keys`` but those the run does not use (an M2 run's aux_dim)."""
    return ", ".join(f"{k}={settings.get(k)}" for k in keys if k not in unused) or "run"


def _path_names(settings: list[dict]) -> dict[str, dict[str, str]]:
    """For each setting whose values are paths (init_from, m1_run, data_dir: a string with a
    /), each path by the fewest of its last components that tell it from the others
    (:func:`distinct_names`): a figure that labelled its ticks and legend by whole paths
    squeezed its panels to nothing ("constrained_layout not applied because axes sizes
    collapsed to zero") and overlapped the tick labels."""
    names = {}
    for key in dict.fromkeys(k for s in settings for k in s):
        values = [s.get(key) for s in settings]
        if all(isinstance(v, str) for v in values) and any("/" in v for v in values):
            paths = [v for v in dict.fromkeys(values) if v]
            names[key] = dict(zip(paths, distinct_names(paths)))
    return names


def _named(settings: dict, names: dict[str, dict[str, str]]) -> dict:
    """``settings`` with each path named as :func:`_path_names` names it."""
    return {k: names[k].get(v, v) if k in names else v for k, v in settings.items()}


def plot_overlaid_curves(records: list[RunRecord], output: Path) -> Path:
    """The validation curve of every run by epoch (validation ELBO, or accuracy of q(y | x)
    for M2), labelled by the settings that differ."""
    from matplotlib.figure import Figure

    from pyro_vae.plots import check_figure_output

    check_figure_output(output)  # before anything is drawn
    keys = differing_keys(records)
    accuracy = all("valid_accuracy" in (r.history[0] if r.history else {}) for r in records)
    column = "valid_accuracy" if accuracy else "valid_elbo"
    for record in records:  # one axis: every run's validation curve must be of the same quantity
        if any(column not in row for row in record.history):
            other = "validation accuracy" if column == "valid_elbo" else "validation ELBO"
            raise PyroVAEError(f"{record.run_dir}'s validation curve is its {other}, which cannot share an axis with "
                               f"the others' ({column.replace('_', ' ')}); draw the label models' curves and the "
                               "others' apart.")
    names = _path_names([r.settings for r in records])
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    drawn_epochs = set()
    for record in records:
        epochs = [row["epoch"] for row in record.history]
        drawn_epochs.update(epochs)
        (line,) = ax.plot(epochs, [row[column] for row in record.history], marker=".",
                          label=_label(_named(record.settings, names), keys, record.unused))
        best = record.summary.get("best_epoch")
        if best is not None:  # in the run's colour: a black star hid the point of a one-epoch run, and its colour
            ax.plot([best], [next(row[column] for row in record.history if row["epoch"] == best)], "*", ms=10,
                    color=line.get_color(), markeredgecolor="black")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(drawn_epochs) == 1:  # an axis that spans no two whole epochs was ticked at 0.945, 0.96, ...
        ax.set_xticks(sorted(drawn_epochs))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy of q(y | x)" if accuracy else
                  _metric_axis_label(records, column, "validation ELBO"), fontsize=None if accuracy else "small")
    ax.set_title("Validation curves (star: the best epoch kept)")
    ax.legend(fontsize="small")
    group_keys, groups = group_runs(records)
    note = None if accuracy else _incomparable_note(groups, group_keys, "validation ELBO")
    if note:  # one axis invites ranking what cannot be ranked: said under it
        fig.supxlabel(textwrap.fill(note, 110), fontsize="small", color="C3")
    return _save(fig, output)


def check_metric(records: list[RunRecord], metric: str) -> None:
    """Refuse a figure's ``metric`` that is not one of the sweep's, or that a run lacks (a
    VAE has no accuracy), in one sentence, before anything is drawn or printed."""
    from pyro_vae.experiments.sweep import METRICS, metric_value

    if metric not in METRICS:
        raise PyroVAEError(f"unknown --metric '{metric}'; choose from {', '.join(METRICS)}.")
    for record in records:
        try:
            metric_value(record.summary, metric)
        except (KeyError, TypeError, ValueError):
            raise PyroVAEError(f"{record.run_dir} has no {metric} ({METRICS[metric]}); choose a --metric every run "
                               "has (test_elbo, valid_elbo; test_accuracy for label models).") from None


def _point_and_error(runs: list[RunRecord], metric: str) -> tuple[float, float]:
    """A sweep figure's point: the mean of ``metric`` over the seeds ± the standard error of
    that mean; for a point of one seed, the run's own value ± its standard error over the
    images it was computed on (as the compare table shows it), refused where not recorded."""
    from pyro_vae.experiments.sweep import metric_stderr, metric_value

    mean, se = mean_and_stderr([metric_value(r.summary, metric) for r in runs])
    if len(runs) == 1:
        se = metric_stderr(runs[0].summary, metric)
        if se is None:
            raise PyroVAEError(f"{runs[0].run_dir} records no standard error of its {metric} and is its point's only "
                               "seed, so the figure would draw it without an uncertainty; run more seeds of each "
                               "point (sweep --seeds 2), or choose a --metric the run records one for (test_elbo).")
    return mean, se


def _metric_axis_label(records: list[RunRecord], metric: str, name: str | None = None) -> str:
    """The y axis of a sweep figure (or of the overlaid curves): the metric (called ``name``
    where given), its unit and its kind of number (a bound on log p(x) of which data, or a
    fraction of the images)."""
    from pyro_vae.experiments.sweep import METRICS
    from pyro_vae.inference.kinds import MARGINAL

    accuracy = "accuracy" in metric or (metric == "selection" and all("valid_accuracy" in r.summary for r in records))
    if accuracy:
        return f"{name or metric}: a fraction of the images"
    if all(is_autoencoder(r.summary) for r in records):
        return f"{name or metric}, nats per example\n" + textwrap.fill(f"({AUTOENCODER_NUMBER})", 50)
    kinds = "; ".join(dict.fromkeys("an autoencoder's reconstruction term" if is_autoencoder(r.summary) else
                                    r.summary.get("kind") or UNKNOWN_KIND for r in records))
    # of what: log p(x), or the conditional VAE's log p(x | y), quadrant completion's log p(x_m | x_g)
    quantities = " or ".join(dict.fromkeys(quantity_of(r, "test ELBO") or MARGINAL for r in records
                                           if not is_autoencoder(r.summary)))
    what = ("an importance-sampled estimate of " if metric == "valid_loglik" else "a lower bound on ") + quantities
    # wrapped: two kinds on one line ran past the figure's edge, the second cut off ("top-left" kept whole)
    return f"{name or metric}, nats per example\n" + textwrap.fill(f"({what}; {kinds})", 50, break_on_hyphens=False)


def _incomparable_note(groups: list[Group], keys: list[str], metric: str) -> str | None:
    """The sweep figure's note where its points are numbers of kinds that cannot be ranked
    (a mass on binary data beside a density): the points and the reason, as the compare table's
    note says it of the test ELBO, whose kind every bound and estimate of a run shares; None
    where they can be ranked, or for an accuracy."""
    runs = [r for g in groups for r in g.runs]
    if "a fraction of the images" in _metric_axis_label(runs, metric):
        return None
    names = _path_names([g.settings for g in groups])
    labels = [_label(_named(g.settings, names), keys, g.runs[0].unused) for g in groups]  # as the legend names them
    reasons = incomparable_pairs(groups, labels, "test ELBO")
    notes = [f"Not comparable: {metric} of {'; '.join(pairs)}: {reason}." for reason, pairs in reasons.items()]
    autoencoders = [label for label, g in zip(labels, groups) if is_autoencoder(g.runs[0].summary)]
    if autoencoders and len(autoencoders) < len(groups):  # its number bounds nothing: no rank against an ELBO
        notes.append(f"Not comparable: {metric} of {'; '.join(autoencoders)} is {AUTOENCODER_NUMBER}, unlike the "
                     "others' bounds.")
    if metric == "selection":  # each point's own selecting number: an ELBO at one, an IWAE bound at another
        chosen = {label: str(g.runs[0].summary.get("selection", "")).removeprefix("best ")
                  for label, g in zip(labels, groups)}
        if len(set(chosen.values())) > 1:
            notes.append("Not comparable: selection is " + "; ".join(f"the {what} at {label}" for label, what
                                                                      in chosen.items())
                         + " (a bound with more importance samples is higher for the same model).")
    return " ".join(notes) or None


def check_sweep_figure(records: list[RunRecord], metric: str) -> None:
    """Refuse what :func:`plot_sweep_figure` cannot draw (:func:`check_metric`; one run, which
    has no setting or seeds to draw against), before any table is printed or written."""
    check_metric(records, metric)
    if len(records) == 1:
        raise PyroVAEError(f"the figure draws {metric} against the settings runs differ in, and {records[0].run_dir} "
                           "is one run; give several runs or a sweep directory, or leave out the figure.")


def plot_sweep_figure(records: list[RunRecord], output: Path, metric: str = "test_elbo") -> Path:
    """One panel per swept setting: ``metric`` (mean over seeds, bars ± one standard error
    of that mean; a point of one seed: the run's value ± its own standard error over the
    images) against the setting's values, one line per combination of the other settings.
    The title says which standard error each bar is and the y axis the kind of number."""
    from matplotlib.figure import Figure

    from pyro_vae.experiments.sweep import METRICS
    from pyro_vae.plots import check_figure_output

    check_figure_output(output)  # before anything is drawn
    check_sweep_figure(records, metric)
    keys, groups = group_runs(records)
    points = {id(group): _point_and_error(group.runs, metric) for group in groups}  # refused before drawing
    if not keys:  # the runs differ in their seed alone: there is no setting to draw against
        return _plot_seeds(groups[0], points[id(groups[0])], records, output, metric)
    split = "validation" if metric.startswith("valid") or metric == "selection" else "test"
    seeds = sorted({len(g.runs) for g in groups if len(g.runs) > 1})
    bars = ([f"mean ± s.e. over {'/'.join(map(str, seeds))} seeds"] if seeds else []) + (
        [f"{'one seed' if seeds else 'one seed per point'}: ± the run's s.e. over its {split} images"]
        if any(len(g.runs) == 1 for g in groups) else [])
    names = _path_names([g.settings for g in groups])
    fig = Figure(figsize=(5.5 * max(1, len(keys)), 4.4), layout="constrained")
    for panel, key in enumerate(keys or ["run"]):
        ax = fig.add_subplot(1, max(1, len(keys)), panel + 1)
        others = [k for k in keys if k != key]
        values = list(dict.fromkeys(g.settings.get(key) for g in groups))
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        order = sorted(values) if numeric else values
        series: dict[str, dict] = {}
        for group in groups:
            series.setdefault(_label(_named(group.settings, names), others), {})[group.settings.get(key)] = group
        for name, by_value in series.items():
            xs, means, errors = [], [], []
            for value in order:
                if value in by_value:
                    mean, se = points[id(by_value[value])]
                    xs.append(value if numeric else order.index(value))
                    means.append(mean)
                    errors.append(se)
            ax.errorbar(xs, means, yerr=errors, marker="o", capsize=4, label=name if others else None)
        if not numeric:
            ax.set_xticks(range(len(order)), [str(names[key].get(v, v) if key in names else v) for v in order])
        ax.set_xlabel(key)
        ax.set_ylabel(_metric_axis_label(records, metric), fontsize="small")
        if others:
            ax.legend(fontsize="small")
        ax.set_title(f"{METRICS.get(metric, metric).split(' (')[0]}\n{'; '.join(bars)}", fontsize="small")
    note = _incomparable_note(groups, keys, metric)
    if note:  # one axis invites ranking what cannot be ranked: said under the panels
        fig.supxlabel(textwrap.fill(note, 70 * max(1, len(keys))), fontsize="small", color="C3")
    return _save(fig, output)


def _plot_seeds(group: Group, point: tuple[float, float], records: list[RunRecord], output: Path,
                metric: str) -> Path:
    """The figure of runs that differ in their seed alone: each seed's value (± the run's own
    standard error over its images, where recorded) at x = its seed, and their mean ± the
    standard error over the seeds as a line and band. (The sweep figure's panel per setting
    drew them as one point at an x of None.)"""
    from matplotlib.figure import Figure

    from pyro_vae.experiments.sweep import METRICS, metric_stderr, metric_value

    runs = sorted(group.runs, key=lambda r: r.settings.get("seed", 0))
    seeds = [r.settings.get("seed", 0) for r in runs]
    values = [metric_value(r.summary, metric) for r in runs]
    errors = [metric_stderr(r.summary, metric) for r in runs]
    mean, se = point
    fig = Figure(figsize=(5.5, 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.errorbar(seeds, values, yerr=None if None in errors else errors, marker="o", linestyle="none", capsize=4,
                label="each seed" + ("" if None in errors else " (± its s.e. over its images)"))
    ax.axhline(mean, color="C1", label=f"mean over the {len(runs)} seeds (± s.e. of the mean)")
    ax.axhspan(mean - se, mean + se, color="C1", alpha=0.2)
    ax.set_xticks(seeds, [str(seed) for seed in seeds])
    ax.set_xlabel("seed (the runs differ in nothing else)")
    ax.set_ylabel(_metric_axis_label(records, metric), fontsize="small")
    ax.legend(fontsize="small")
    ax.set_title(f"{METRICS.get(metric, metric).split(' (')[0]}: {mean:.2f} ± {se:.2f} over {len(runs)} seeds",
                 fontsize="small")
    return _save(fig, output)


def _save(fig, output: Path) -> Path:
    """Write the figure as every figure is written (:func:`pyro_vae.plots._save`): to a
    temporary file renamed into place, so that a kill or a full disk mid-write leaves the
    previous figure whole, and a failed write is one sentence."""
    from pyro_vae.plots import _save as save_figure

    return save_figure(fig, Path(output))


# -- the command's work ------------------------------------------------------------------

def _is_paired_table(path: Path) -> bool:
    """Whether ``path`` is a paired table compare wrote (``PREFIX-paired.csv`` or ``.md``): its
    header's first column is "run" and it has a "paired difference" column."""
    try:
        with open(path, encoding="utf-8") as handle:
            header = handle.readline()
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix == ".csv":
        return header.startswith("run,") and ",paired difference," in header
    return header.startswith("| run |") and "| paired difference |" in header


def remove_stale_paired_tables(prefix: Path) -> list[Path]:
    """Remove ``PREFIX-paired.csv`` and ``.md`` of an earlier comparison, where this one wrote
    no paired table (no reference, or every run refused): beside the new ``PREFIX.md`` they
    would pass for its paired differences. Only files compare wrote (:func:`_is_paired_table`)
    are removed; another file of that name is left as it is. Returns the paths removed."""
    from pyro_vae.errors import WriteError

    removed = []
    for suffix in (".csv", ".md"):
        path = Path(f"{prefix}-paired{suffix}")
        if path.is_file() and not path.is_symlink() and _is_paired_table(path):
            try:
                path.unlink()
            except OSError as err:
                raise WriteError(f"cannot remove {path}, the paired table of an earlier comparison that this one "
                                 f"does not replace ({err.strerror or err}); delete it by hand.") from None
            removed.append(path)
    return removed


def write_tables(columns: list[str], rows: list[dict], prefix: Path, notes: list[str] = ()) -> list[Path]:
    """``PREFIX.csv`` and ``PREFIX.md`` (with ``notes`` under the table), written atomically."""
    from pyro_vae.inference.checkpoint import atomic_write_text
    from pyro_vae.outputs import make_folder

    prefix = Path(prefix)
    make_folder(prefix)
    csv_path, md_path = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".md")
    atomic_write_text(csv_path, to_csv(columns, rows))
    atomic_write_text(md_path, to_markdown(columns, rows, notes))
    return [csv_path, md_path]
