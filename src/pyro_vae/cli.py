"""The ``pyro-vae`` command: parses flags and config, then calls the library. No maths here.

Every field of the configuration (see :mod:`pyro_vae.config`) is a ``train`` flag:
``latent_dim`` is ``--latent-dim``. A problem the user can fix exits with code 2 and one
sentence on stderr (the traceback too with ``--debug``).
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m pyro_vae.cli`: the program's entry runs before this module's imports
    from pyro_vae.entry import main as _program

    raise SystemExit(_program())

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
import traceback
from dataclasses import MISSING, fields
from pathlib import Path

from pyro_vae.config import SECTIONS, Config, check_seed, choices, field_help, field_types, show_value
from pyro_vae.entry import interrupted_message, raise_interrupted
from pyro_vae.errors import ConfigError, PyroVAEError, TrainingInterrupted
from pyro_vae.outputs import check_output, make_folder

USAGE_ERROR = 2

#: The options of ``plot`` that each --kind reads (besides -o and --device); any other given is refused.
PLOT_OPTIONS = {
    "samples": ("n", "seed", "label"),  # --label: one class of a conditional model, as `sample --label`
    "reconstructions": ("n",),  # the first -n test images (at most 32)
    "latent": ("limit",),
    "manifold": ("limit",),  # an autoencoder's grid spans the codes of the first --limit test images
    "interpolate": ("index_a", "index_b", "image_a", "image_b"),  # any two images of the test split
    "arithmetic": ("limit", "attribute", "attribute_file"),
    "prior-check": ("limit", "seed"),
    "curves": (),
    "style": ("n",),  # the first -n test images (at most 10)
    "completions": ("n", "seed"),
    "compare": ("n", "limit", "seed"),
    "sweep": ("metric",),
}
#: The value of each of those options when it is not given.
PLOT_DEFAULTS = {"n": 64, "limit": 5000, "attribute": "", "attribute_file": None, "index_a": 0, "index_b": 1,
                 "image_a": "", "image_b": "", "seed": 0, "metric": "test_elbo", "label": None}


#: What --label does, for `sample` and `plot --kind samples` alike.
LABEL_HELP = "a conditional model (cvae, m2, adgm, m1m2): draw only this class (a number; default: every class, one per row)"


def plot_option_readers(name: str) -> list[str]:
    """The --kind values of ``plot`` that read option ``name`` (:data:`PLOT_OPTIONS`), in its order:
    what the option's help names and what its refusal points to."""
    return [kind for kind, names in PLOT_OPTIONS.items() if name in names]


#: The most images -n may ask of each figure (more would not be drawn); without -n, 64 or this.
N_CAPS = {"samples": 1024, "reconstructions": 32, "style": 10, "completions": 10, "compare": 64}
#: The most samples ``sample -n`` and ``plot --kind samples -n`` draw: a 32 x 32 grid already
#: fills the figure's pixels at one pixel of padding per 28 x 28 image.
MAX_SAMPLES = N_CAPS["samples"]


def _add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per config field, described by the field's own documentation in config.py
    with its allowed values (checked by Config.validate, the same for flags and files)."""
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"[{section}] options (override the config file)")
        notes, types = field_help(cls), field_types(cls)
        for f in fields(cls):
            if f.name in skip:
                continue
            default = f.default_factory() if f.default is MISSING else f.default
            allowed = choices(f.name) or (("true", "false") if types[f.name] is bool else None)
            metavar = "{" + ",".join(allowed) + "}" if allowed else f.name.upper()
            note = notes[f.name].rstrip(".")
            if default != "":
                note += f" (default: {show_value(default)})"
            group.add_argument("--" + f.name.replace("_", "-"), dest=f"cfg:{section}.{f.name}",
                               default=None, metavar=metavar, help=note.replace("%", "%%").strip())


def build_parser() -> argparse.ArgumentParser:
    from pyro_vae.experiments.sweep import METRICS
    from pyro_vae.runs import FIGURE_KINDS, RESUMABLE_CHANGES, SUBSETS

    metrics = ", ".join(METRICS)  # every --metric the sweep, its figure and compare accept

    parser = argparse.ArgumentParser(prog="pyro-vae", description="Variational autoencoders in Pyro.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a VAE (or continue one with --resume)",
                                description="Train a model; every config key is also a flag, and flags override "
                                            "the --config file. An option that would have no effect with the "
                                            "others (e.g. --k without --objective iwae) is refused.",
                                formatter_class=_HelpFormatter)
    train.add_argument("--config", metavar="FILE", help="a TOML config file with [data], [model] and [train] tables "
                       "(configs/*.toml); with --resume, its values are applied like flags")
    train.add_argument("--run-dir", help="where the run's files go (default: a new "
                       "runs/<dataset>-<model>-<likelihood>-<date>-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint; "
                       f"only {', '.join(sorted(k.split('.')[1] for k in RESUMABLE_CHANGES))} may change")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_flags(train)

    evaluate = commands.add_parser("evaluate", help="test ELBO, or log p(x) by importance sampling with --k",
                                   description="Score a trained run: its ELBO (default), or with --k the "
                                               "importance-sampled log-likelihood (log p(x); log p(x | y) for "
                                               "cvae, log p(x_m | x_g) for quadrant), in nats per example, "
                                               "± one standard error over the images scored.",
                                   formatter_class=_HelpFormatter)
    evaluate.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one or more training runs' directories")
    evaluate.add_argument("--k", type=int, default=0, help="importance samples per example (0: the ELBO only)")
    evaluate.add_argument("--split", default="test", choices=("train", "valid", "test"),
                          help="which split to score (binarized as training binarized it); with --label-fidelity, the real "
                               "images the style grid encodes and the z probe is scored on (valid: to choose a setting "
                               "without reading the test set; not train, where the probe is fitted)")
    evaluate.add_argument("--limit", type=int, default=0, help="score only N examples of the split, N at "
                          "least 2 for a standard error (0: all; --label-fidelity takes --fidelity-images instead)")
    evaluate.add_argument("--subset", default=None, choices=SUBSETS,
                          help="with --limit: a random subset drawn with --seed (the default), or the first N")
    evaluate.add_argument("--batch-size", type=int, default=None,
                          help="examples per chunk for --k (default: a chunk of up to 10,000 example-samples on a "
                               "GPU; on the CPU as many as keep the decoder's output under 4 MiB, 1,336 for 28x28 "
                               "images with one output per pixel)")
    evaluate.add_argument("--checkpoint", default="best", choices=("best", "last"),
                          help="the best (by validation) or the last epoch's model")
    evaluate.add_argument("-o", "--output", default=None,
                          help="JSON file for the result (default: RUN_DIR/loglik.json with --k, else evaluation.json)")
    evaluate.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the run's)")
    evaluate.add_argument("--seed", type=int, default=None, help="seeds the importance samples (or, without --k, the ELBO's Monte Carlo reconstruction term), with --k a continuous likelihood's dequantization noise, and the --limit subset; recorded in the JSON")
    evaluate.add_argument("--density", action="store_true",
                          help="with --k: score a continuous likelihood's density on the grey levels as they are, "
                               "not on dequantized images (a number not comparable with probability masses)")
    evaluate.add_argument("--label-fidelity", action="store_true",
                          help="cvae, m2, m1m2, adgm: the share of images decoded with label y that an independent classifier "
                               "of real images assigns to y (prior samples and the style grid), and a linear probe "
                               "of z for the class (RUN_DIR/label_fidelity.json); instead of the ELBO")
    evaluate.add_argument("--fidelity-samples", type=int, default=None,
                          help="with --label-fidelity: codes drawn from the prior per label (default 100)")
    evaluate.add_argument("--fidelity-images", type=int, default=None,
                          help="with --label-fidelity: images of --split (a random subset drawn with --seed) whose codes "
                               "the style grid decodes with every label (default 1000)")
    evaluate.add_argument("--classifier-cache", metavar="DIR", default=None,
                          help="with --label-fidelity: where the judging classifier is kept (default: "
                               "$PYRO_VAE_CLASSIFIER_CACHE or ~/.cache/pyro-vae/classifiers)")

    sample = commands.add_parser("sample", help="a grid of samples from the prior", formatter_class=_HelpFormatter)
    sample.add_argument("run_dir", help="a training run's directory")
    sample.add_argument("-n", type=int, default=None, help=f"how many samples, exactly (default 64; at most "
                        f"{MAX_SAMPLES}: a {math.isqrt(MAX_SAMPLES)} x {math.isqrt(MAX_SAMPLES)} grid); a conditional "
                        "model without --label draws one row per class, n/C of each of its C classes, so n must be a "
                        "multiple of C (default C x (64 // C): 60 for 10 classes)")
    sample.add_argument("-o", "--output", default=None, help="the figure file, .png or .pdf (default: "
                        "RUN_DIR/samples.png)")
    sample.add_argument("--seed", type=int, default=0, help="seeds the draws from the prior")
    sample.add_argument("--label", type=int, default=None,
                        help=LABEL_HELP)
    sample.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the run's)")

    recon = commands.add_parser("reconstruct", help="test images beside their reconstructions",
                                formatter_class=_HelpFormatter)
    recon.add_argument("run_dir", help="a training run's directory")
    recon.add_argument("-n", type=int, default=N_CAPS["reconstructions"],
                       help=f"how many test images (at most {N_CAPS['reconstructions']})")
    recon.add_argument("-o", "--output", default=None, help="the figure file, .png or .pdf (default: "
                       "RUN_DIR/reconstructions.png)")
    recon.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the run's)")
    plot = commands.add_parser("plot", help="a figure of a trained run (curves, sweep, compare, latent: of several)",
                               formatter_class=_HelpFormatter)
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a training run's directory; several runs "
                      "or sweep directories for --kind curves (overlaid) or sweep, several runs for --kind compare "
                      "or latent (side by side)")
    plot.add_argument("--kind", required=True, choices=(*FIGURE_KINDS, "sweep"),
                      help="the figure: samples, reconstructions, latent (codes by class), manifold (2-D latent), "
                           "interpolate, arithmetic (attribute vectors), prior-check (aggregate posterior per "
                           "dimension), curves (metrics by epoch; several runs overlaid), style (cvae), "
                           "completions (quadrant), sweep (a metric against each swept setting), compare (runs side "
                           "by side: codes, decoded N(0, I) draws, reconstruction and generation numbers)")
    plot.add_argument("-o", "--output", required=True, help="the figure file (.png or .pdf)")
    # None: not given (a kind that does not use an option refuses it; see PLOT_OPTIONS)
    caps = ", ".join(f"{kind} {cap}" for kind, cap in N_CAPS.items())
    plot.add_argument("-n", type=int, default=None, help=f"{', '.join(plot_option_readers('n'))}: "
                      f"how many images (default 64 or the most; the most: {caps}; samples of a conditional "
                      "model without --label: a multiple of its classes, default 60 for 10, as `sample -n`)")
    plot.add_argument("--limit", type=int, default=None, help="the first N test images the figure reads "
                      f"({', '.join(plot_option_readers('limit'))}; manifold reads them for an autoencoder only; default "
                      f"{PLOT_DEFAULTS['limit']})")
    plot.add_argument("--attribute", default=None, help="arithmetic: an attribute name (Smiling), class name or "
                      "number (names in any case)")
    plot.add_argument("--attribute-file", default=None, help="arithmetic: 0/1 per test image (.txt or .npy)")
    plot.add_argument("--index-a", type=int, default=None, help="interpolate: first test image (default 0)")
    plot.add_argument("--index-b", type=int, default=None, help="interpolate: second test image (default 1)")
    plot.add_argument("--image-a", default=None, help="interpolate: first image, by file name (image folders)")
    plot.add_argument("--image-b", default=None, help="interpolate: second image, by file name (image folders)")
    plot.add_argument("--seed", type=int, default=None, help="seeds the draws "
                      f"({', '.join(plot_option_readers('seed'))}; default {PLOT_DEFAULTS['seed']})")
    plot.add_argument("--label", type=int, default=None,
                      help=f"samples: {LABEL_HELP}, as `sample --label`")
    plot.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the run's)")
    plot.add_argument("--metric", default=None, help=f"sweep: the quantity drawn ({metrics}; default test_elbo)")

    compare = commands.add_parser("compare", help="a table of runs or sweeps: what differs, what came out",
                                  formatter_class=_HelpFormatter)
    compare.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP")
    compare.add_argument("-o", "--output", default=None, metavar="PREFIX",
                         help="write PREFIX.csv and PREFIX.md (a .csv or .md ending is taken off PREFIX; a folder, DIR/: "
                              "DIR/compare.csv and .md; default for one sweep: SWEEP_DIR/compare)")
    compare.add_argument("--reference", default=None, metavar="RUN_DIR",
                         help="paired difference of log p(x) of every evaluated run against this one")
    compare.add_argument("--figure", default=None, help="also draw the sweep figure (metric against each setting)")
    compare.add_argument("--metric", default=None,
                         help=f"with --figure: the figure's quantity ({metrics}; default test_elbo)")

    sweep = commands.add_parser("sweep", help="train a grid or a search of runs as one Optuna study",
                                formatter_class=_HelpFormatter)
    sweep.add_argument("--config", help="the base config (TOML); its [sweep] table may hold grid, seeds, search...")
    sweep.add_argument("--sweep-dir", required=True, help="the sweep's directory (a rerun continues it)")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="a grid dimension, e.g. beta=0.5,1,2 (repeat for more)")
    sweep.add_argument("--search", action="append", default=[], metavar="KEY=RANGE",
                       help="a search range: int:8:64, float:0.1:2, logfloat:1e-4:1e-2 or choice:a,b")
    sweep.add_argument("--seeds", default=None, help="repeat each grid point with seeds 0..N-1 (default: the config's seed)")
    sweep.add_argument("--trials", type=int, default=None, help="a search's number of trials")
    sweep.add_argument("--metric", default=None, help="what the study maximises and the figure shows "
                       f"({metrics}; default valid_elbo; a search takes a validation one: it chooses its trials by it)")
    sweep.add_argument("--sampler", default=None, choices=("tpe", "random"), help="a search's sampler (default tpe)")
    sweep.add_argument("--storage", default=None, help="Optuna storage URL shared by several machines "
                       "(default sqlite:///SWEEP_DIR/study.db)")
    sweep.add_argument("--workers", type=int, default=1, help="processes that take trials in parallel")
    sweep.add_argument("--join", action="store_true", help=argparse.SUPPRESS)  # a worker process of --workers
    sweep.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    _add_config_flags(sweep, skip=("workers",))  # --workers is the sweep's; data.workers goes in the config file
    return parser


class _HelpFormatter(argparse.HelpFormatter):
    """Help with the defaults argparse knows shown after each option's description."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "default:" in text or default is None or default is False or default == "" or default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


def _apply_flags(config: Config, args) -> Config:
    """Set the config keys given as flags (only those) on ``config``."""
    for key, value in vars(args).items():
        if key.startswith("cfg:") and value is not None:
            dotted = key[4:]
            config.set(dotted, value, source="--" + dotted.split(".")[1].replace("_", "-"))
    return config


def _best_epoch(summary: dict) -> str:
    """The scored epoch in words, from a run's summary.json: which of the epochs trained, whether
    --patience stopped the run, and what chose it ("best epoch 3 of 10, chosen by the best
    validation ELBO")."""
    # (a summary.json of an older version, shown again by a --resume with nothing to train, may lack the last two)
    stopped = f" (stopped early by --patience {summary.get('patience')})" if summary.get("stopped_early") else ""
    chosen = f", chosen by the {summary['selection']}" if "selection" in summary else ""
    return f"best epoch {summary['best_epoch']} of {summary['epochs']}{stopped}{chosen}"


def cmd_train(args) -> int:
    from pyro_vae.runs import read_run_config, train_run

    if args.resume:
        if args.run_dir and Path(args.run_dir).resolve() != Path(args.resume).resolve():
            raise PyroVAEError("--resume RUN_DIR continues the run where it is; drop --run-dir (or give it the "
                               "same directory).")
        # The run's own config.toml rules; the --config file's keys, then the flags, are
        # applied over it: the options that may change on resume are taken, others refused.
        requested = read_run_config(Path(args.resume))
        if args.config:
            requested.update_from(args.config)
        summary = train_run(None, Path(args.resume), resume=True, progress=False if args.no_progress else None,
                            overrides=_apply_flags(requested, args))
        run_dir = Path(args.resume)
    else:
        config = _apply_flags(Config.load(args.config) if args.config else Config(), args)
        config.validate()
        from pyro_vae.experiments.rundirs import default_run_dir

        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(config)
        summary = train_run(config, run_dir, progress=False if args.no_progress else None)
    if not summary:  # a rank other than 0 of a distributed run: rank 0 reports
        return 0
    if "test_accuracy" in summary:
        percent = lambda key: f"{100 * summary[key]:.2f} ± {100 * summary[key + '_stderr']:.2f}%"  # noqa: E731
        # M1+M2's second baseline, M2's classifier on M1's codes alone: what M2 adds to M1's features
        codes = (f"; M1 + classifier (M2's classifier on M1's codes) {percent('codes_baseline_test_accuracy')}"
                 if "codes_baseline_test_accuracy" in summary else "")
        print(f"test accuracy {percent('test_accuracy')} with {summary['labels']} labels ({_best_epoch(summary)}); "
              f"supervised-only baseline {percent('baseline_test_accuracy')}{codes} "
              f"(± is the binomial standard error over the test images); run directory {run_dir}")
    elif "test_elbo" not in summary:  # a plain autoencoder has no ELBO
        print(f"test reconstruction log p(x | code) {summary['test_reconstruction']:.2f} ± "
              f"{summary['test_reconstruction_stderr']:.2f} nats per example (a {summary['kind']}; ± is the standard "
              f"error over the test images; {_best_epoch(summary)}; an autoencoder has no ELBO or log p(x)); "
              f"run directory {run_dir}")
    else:
        print(f"test ELBO {summary['test_elbo']:.2f} ± {summary['test_elbo_stderr']:.2f} nats per example, "
              f"{summary['bits_per_dim']:.4f} ± {summary['bits_per_dim_stderr']:.4f} bits/dim{_scored(summary)} "
              "(a lower bound on "
              f"{summary.get('quantity', 'log p(x)')}, {summary['kind']}; ± is the "
              f"standard error over the test images; {_best_epoch(summary)}); run directory {run_dir}")
    if summary.get("nothing_trained"):  # the result line is the run's summary.json; no figure was drawn
        return 0
    for figure in summary["figures"]:
        print(f"figure: {figure}")
    config = read_run_config(run_dir)
    if not summary["figures"] and not config.train.figures:
        # the kinds the run would have drawn (runs._figures): quadrant completes, M1+M2 has no images
        others = {"quadrant": " (or completions)", "m1m2": " (or samples, style: decoded through M1)"}.get(config.model.model, " (or samples, reconstructions)")
        print(f"figures: none drawn (--figures false); `pyro-vae plot {run_dir} --kind curves -o curves.png`{others} "
              "draws them")
    return 0


def cmd_evaluate(args) -> int:
    if args.k < 0 or args.limit < 0 or (args.batch_size is not None and args.batch_size < 1):
        raise PyroVAEError("--k and --limit must be 0 or more and --batch-size at least 1.")
    if len(args.run_dirs) > 1 and args.output:
        raise PyroVAEError("-o names one file; with several runs leave it out (each run gets its own JSON).")
    if args.label_fidelity and args.k:
        raise PyroVAEError("--label-fidelity and --k are two measurements; run evaluate once with each.")
    if args.limit == 1 and not args.label_fidelity:  # evaluate_elbo and LogLikelihoodEstimate: one value, stderr 0
        raise PyroVAEError("--limit 1 scores one image, and the mean of one value has no standard error to print "
                           "beside it (it showed ± 0.00); give --limit 2 or more.")
    # an option that would have no effect is refused (None: not given)
    unused = [(args.density and not args.k, "--density",
               "it scores the density of --k's log p(x); give --k K or drop it"),
              (args.batch_size is not None and not args.k, "--batch-size",
               "it sizes --k's chunks; give --k K or drop it"),
              (args.subset is not None and not args.limit, "--subset", "it picks the --limit images; give --limit N "
               "or drop it"),
              (args.label_fidelity and args.limit, "--limit", "--label-fidelity sizes its sample with "
               "--fidelity-samples and --fidelity-images; drop --limit")]
    unused += [(getattr(args, name) is not None and not args.label_fidelity, "--" + name.replace("_", "-"),
                "it sets --label-fidelity's measurement; give --label-fidelity or drop it")
               for name in ("fidelity_samples", "fidelity_images", "classifier_cache")]
    for given, option, fix in unused:
        if given:
            raise PyroVAEError(f"{option} has no effect here: {fix}.")
    args.subset = args.subset or "random"
    args.seed_given, args.seed = args.seed is not None, args.seed or 0
    args.fidelity_samples = 100 if args.fidelity_samples is None else args.fidelity_samples
    args.fidelity_images = 1000 if args.fidelity_images is None else args.fidelity_images
    if args.label_fidelity and (args.fidelity_samples < 1 or args.fidelity_images < 1):
        raise PyroVAEError("--fidelity-samples and --fidelity-images must be at least 1.")
    if len(args.run_dirs) > 1:  # every run and its output file are checked before the first one's results are written
        from pyro_vae.runs import open_run

        for run_dir in args.run_dirs:
            run = open_run(Path(run_dir), args.checkpoint, args.device)
            _refuse_evaluation(args, run)
            if args.limit and not args.label_fidelity:  # a --limit above a later run's split, before the first is scored
                from pyro_vae.runs import evaluation_examples

                evaluation_examples(run, args.split, args.limit, args.subset, args.seed)
        for run_dir in args.run_dirs:  # once every run has opened: a missing one is named first
            _checked_output(args, Path(run_dir))
    for run_dir in args.run_dirs:
        if len(args.run_dirs) > 1:
            print(f"{run_dir}:")
        _evaluate_one(args, run_dir)
    return 0


def _refuse_evaluation(args, run) -> None:
    """The refusals that need only the reopened run, not its data or an estimate."""
    from pyro_vae.runs import binary_data

    if run.config.model.model == "m1m2" and not args.label_fidelity:  # its data are M1's codes, not images
        raise PyroVAEError(f"{run.run_dir} is a --model m1m2 run, whose M2 models M1's codes, not the images, so it "
                           "has no ELBO or log p(x) of the images; its results are the test accuracy in its "
                           f"summary.json and `pyro-vae evaluate {run.run_dir} --label-fidelity`.")
    autoencoder = not getattr(run.model, "has_marginal_likelihood", True)
    if args.k and autoencoder:
        raise PyroVAEError(f"a plain autoencoder has no prior p(z) and so no log p(x) to estimate ({run.run_dir}); "
                           "leave out --k to score its reconstruction log p(x | code).")
    if autoencoder and args.seed_given and not (args.k or args.label_fidelity) and (not args.limit or args.subset == "first"):
        raise PyroVAEError(f"--seed has no effect on the reconstruction score of {run.run_dir}, a plain autoencoder: "
                           "its code is the encoder's output, so nothing is drawn (the seed would pick a random "
                           "--limit subset); drop it.")
    if args.density and (run.model.likelihood.data_kind != "unit-interval" or binary_data(run.config)):
        from pyro_vae.inference.kinds import DENSITY, number_kind

        # a continuous likelihood on binary images scores a density already (only 8-bit images are dequantized)
        kind = number_kind(run.model.likelihood.data_kind, binary_data(run.config))
        what = "a density already: binary images are not dequantized" if kind == DENSITY else f"a {kind}"
        raise PyroVAEError(f"--density has no effect on {run.run_dir}: its log p(x) is {what}, scored as it is; "
                           "drop --density.")
    if args.label_fidelity:
        from pyro_vae.experiments import labels

        labels.check_labelled(run)


def _checked_output(args, run_dir: Path) -> Path:
    """The JSON file that evaluating ``run_dir`` writes (:func:`_json_output`; with ``--k`` its
    per-example file beside it too), refused now, before anything is measured, where it could
    not be written or holds another request's result."""
    from pyro_vae.experiments.labels import FIDELITY_FILE

    target = Path(args.output) if args.output else None
    if target is not None and target.name in ("loglik.json", FIDELITY_FILE):
        from pyro_vae.runs import is_run_dir

        other = target.parent
        if is_run_dir(other) and other.resolve() != Path(run_dir).resolve():  # compare reads it as that run's
            raise PyroVAEError(f"-o {target} is where compare reads the results of the run {other}, and these are "
                               f"of {run_dir}: they would replace that run's and be read as its own; give -o "
                               "another path.")
    if args.output and not args.k and Path(args.output).name == "loglik.json":
        from pyro_vae.runs import is_run_dir

        if is_run_dir(Path(args.output).parent):  # compare reads it as the run's log p(x) and its bits/dim
            raise PyroVAEError(f"-o {args.output} is where compare reads that run's log p(x) estimate (evaluate --k), "
                               f"and this {'label fidelity' if args.label_fidelity else 'ELBO'} would be read as one; "
                               "give -o another path.")
    if args.output and not args.label_fidelity and Path(args.output).name == FIDELITY_FILE:
        from pyro_vae.runs import is_run_dir

        if is_run_dir(Path(args.output).parent):  # compare reads it as the run's label fidelity
            raise PyroVAEError(f"-o {args.output} is where compare reads that run's label fidelity (evaluate "
                               f"--label-fidelity), and this {'log p(x) estimate' if args.k else 'ELBO'} would be "
                               "read as one; give -o another path.")
    if args.label_fidelity:
        return _json_output(args, run_dir, FIDELITY_FILE, _request(args, "label-fidelity"))
    if not args.k:
        return _json_output(args, run_dir, "evaluation.json", _request(args, "elbo"))
    from pyro_vae.experiments.compare import examples_path

    output = _json_output(args, run_dir, "loglik.json", _request(args, "loglik"))
    # the per-example file of the JSON it writes is its own (loglik.json's is a run's record, as loglik.json may be replaced)
    check_output(examples_path(output), f"-o {output}'s per-example file" if args.output else None, own_record=True)
    return output


def _checkpoint_position(run) -> dict:
    """Which epoch and step the evaluated checkpoint holds, so that a number quoted from an
    evaluation names its model even while the run trains on and its best checkpoint moves."""
    return {"checkpoint_epoch": run.checkpoint.get("epoch"), "checkpoint_step": run.checkpoint.get("step")}


def _evaluate_one(args, run_dir: str) -> None:
    import pyro

    from pyro_vae.inference.loglik import importance_log_likelihood
    from pyro_vae.runs import open_run, write_json

    run = open_run(Path(run_dir), args.checkpoint, args.device)
    pyro.set_rng_seed(args.seed)
    _refuse_evaluation(args, run)  # before anything is trained or written
    if args.label_fidelity:
        from pyro_vae.experiments import labels

        output, request = _checked_output(args, run.run_dir), _request(args, "label-fidelity")
        result = labels.measure_run(run, args.fidelity_samples, args.fidelity_images, args.seed,
                                    args.classifier_cache, log=lambda line: print(line, file=sys.stderr),
                                    split=args.split)
        make_folder(output)
        write_json(output, {"checkpoint": args.checkpoint, **_checkpoint_position(run), **result, "request": request})
        print(labels.describe(result))
        return 0
    if args.k == 0:
        from pyro_vae.runs import evaluate_run

        request = _request(args, "elbo")
        output = _checked_output(args, run.run_dir)  # refused before the evaluation
        result = {**_checkpoint_position(run), **evaluate_run(run, args.split, args.limit, args.subset, args.seed),
                  "request": request}
        make_folder(output)
        write_json(output, result)
        if "elbo" not in result:  # a plain autoencoder
            print(f"{args.split} reconstruction log p(x | code) {result['reconstruction']:.2f} ± "
                  f"{result['reconstruction_stderr']:.2f} nats per example (a {result['kind']}; {result['examples']} "
                  "examples; ± is the standard error over the images; an autoencoder has no ELBO or log p(x))")
            return 0
        split = "train-split" if args.split == "train" else args.split  # not the training objective
        print(f"{split} ELBO {result['elbo']:.2f} ± {result['elbo_stderr']:.2f} nats per example "
              f"(reconstruction {result['reconstruction']:.2f} ± {result['reconstruction_stderr']:.2f}, KL "
              f"{result['kl']:.2f} ± {result['kl_stderr']:.2f}; {result['examples']} examples; "
              f"± is the standard error over the images), {result['bits_per_dim']:.4f} ± "
              f"{result['bits_per_dim_stderr']:.4f} bits/dim{_scored(result)}: "
              f"a lower bound on {result['quantity']}, {result['kind']}")
        return 0
    from pyro_vae.data.datasets import as_tensor
    from pyro_vae.inference.dequantize import score_log_likelihood
    from pyro_vae.inference.train import label_kwargs
    from pyro_vae.runs import (ProgressReport, binary_data, ess_warning, estimate_name,
                               evaluation_examples, kind_fields, scored_pixels)

    from pyro_vae.experiments.compare import save_examples  # per image, for paired comparisons

    request = _request(args, "loglik")
    output = _checked_output(args, run.run_dir)  # both files refused before the estimate
    part, chosen, rows = evaluation_examples(run, args.split, args.limit, args.subset, args.seed)
    images = as_tensor(part.images)
    name = estimate_name(run.config)
    m2 = run.config.model.model in ("m2", "adgm")  # the label is a latent variable: summed out
    report = ProgressReport(f"{args.split} {name}, K={args.k}", len(images) * (run.model.num_classes if m2 else 1))

    # The estimator's CPU chunks stay under the mmap threshold and the heap keeps its free top
    # (pyro_vae.memory), and no chunk leaves a tensor behind (pyro_vae.inference.loglik), so each
    # chunk reuses the last one's memory: a flat peak without a malloc_trim after each chunk,
    # which would hand the pages back only to fault them in again.
    progress = report

    def estimator(x):  # x: the images, or their dequantized copies
        if m2:  # log p(x), the label summed out exactly
            from pyro_vae.inference.semisupervised import marginal_log_likelihood

            return marginal_log_likelihood(run.model, run.guide, x, run.model.num_classes, k=args.k,
                                           batch_size=args.batch_size, progress=progress)
        # for the conditional VAE this is log p(x | y), the label given
        return importance_log_likelihood(run.model, run.guide, x, k=args.k, batch_size=args.batch_size,
                                         progress=progress, **label_kwargs(run.model, part.labels))

    estimate, kind = score_log_likelihood(estimator, images, run.model.likelihood.data_kind,
                                          binary_data(run.config), dequantized=not args.density, seed=args.seed,
                                          scored=scored_pixels(run.config, images.shape[1:]))
    report.close()
    result = {**chosen, "estimate": name, "checkpoint": args.checkpoint, **_checkpoint_position(run), "seed": args.seed,
              **estimate.summary(),
              "stderr_is": f"the standard error of the mean over the {len(images)} {args.split} images",
              **kind_fields(run.config, run.model.likelihood, images.shape[1:], estimate.mean, estimate.stderr, kind),
              "request": request}
    make_folder(output)
    result["per_example_file"] = save_examples(output, estimate.log_likelihood, rows, args.split, args.k,
                                               run.config.data.dataset).name
    write_json(output, result)
    given = result["quantity"][len(name) + 2:]  # quadrant completion: which quadrants x_g is
    print(f"{args.split} {name} {estimate.mean:.2f} ± {estimate.stderr:.2f} nats per example{f' ({given})' * bool(given)}, "
          f"{result['bits_per_dim']:.4f} ± {result['bits_per_dim_stderr']:.4f} bits/dim{_scored(result)}: {kind} "
          f"(± one standard "
          f"error over the {len(images)} {args.split} images; K={args.k}, ESS mean {result['ess_mean']:.1f} "
          f"min {result['ess_min']:.1f}{_ess_of(result, args.k)}, {estimate.seconds:.1f} s)")
    warning = ess_warning(estimate)
    if warning:
        print(f"pyro-vae: {warning}", file=sys.stderr)


def _ess_of(fields: dict, k: int) -> str:
    """Where the ESS is over more weights than K (M2's classes summed out: C * K), how many; else ''."""
    draws = fields.get("ess_of", k)
    return f" of {draws} weights ({draws // k} classes x K)" if draws != k else ""


def _scored(fields: dict) -> str:
    """Where a log-likelihood scores part of each image (quadrant completion's missing
    pixels), the pixel values its bits/dim is over; else ''."""
    if "image_dimensions" not in fields:
        return ""
    return f" over the {fields['dimensions']} of {fields['image_dimensions']} pixel values scored"


def _request(args, measure: str) -> dict:
    """The evaluate options that define a result (``measure``: elbo, loglik or label-fidelity),
    recorded in its JSON as ``request``: a default result file is replaced only by the same request."""
    request = {"measure": measure, "checkpoint": args.checkpoint, "split": args.split, "seed": args.seed}
    if measure == "label-fidelity":
        return {**request, "fidelity_samples": args.fidelity_samples, "fidelity_images": args.fidelity_images}
    request.update(limit=args.limit, subset=args.subset if args.limit else "all")
    return {**request, "k": args.k, "density": bool(args.density)} if measure == "loglik" else request


def _json_output(args, run_dir: Path, default: str, request: dict) -> Path:
    """Where a result goes: ``-o``, or ``default`` in the run directory. A default file that
    holds a result of another request (K, split, images, seed, checkpoint) is not replaced
    silently (an hour's K=5000 estimate by a quick check): that is refused, naming the -o that
    replaces it and the one that keeps both."""
    path = Path(args.output) if args.output else run_dir / default
    check_output(path, "-o" if args.output else None)  # a missing folder is made when the file is written
    if not args.output and path.is_file():
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            earlier = {}
        if not isinstance(earlier, dict) or earlier.get("request") != request:
            before = earlier.get("request") if isinstance(earlier, dict) else None
            differing = ([f"{key} {before.get(key)!r}, now {value!r}" for key, value in request.items()
                          if before.get(key) != value] if isinstance(before, dict) else [])
            which = f" ({'; '.join(differing)})" if differing else ""
            raise PyroVAEError(f"{path} already holds {_described(earlier)}, measured with other options than "
                               f"these{which}; give -o {path} to replace it, or -o another file to keep both.")
    return path


def _described(result: dict) -> str:
    """An earlier result as a few words: what, K, how many images of which split, which checkpoint."""
    if not isinstance(result, dict) or not result:
        return "a result pyro-vae cannot read"
    what = ("a label fidelity" if "prior" in result else f"a log p(x) estimate with K={result['k']}" if "k" in result
            else "an evaluation")
    split = f"{result['split']} " if result.get("split") else ""
    images = f" on {result['examples']} {split}images" if "examples" in result else ""
    checkpoint = f" of the {result['checkpoint']} checkpoint" if "checkpoint" in result else ""
    return f"{what}{images}{checkpoint}"


def _draw(args, kind: str, output: str, **options) -> int:
    """Reopen the run's best model and draw figure ``kind`` into ``output``."""
    import pyro

    from pyro_vae.runs import figure_from_run, open_run

    if args.n is not None and args.n < 1:
        raise PyroVAEError(f"-n must be at least 1, not {args.n}.")
    run = open_run(Path(args.run_dir), "best", args.device)
    pyro.set_rng_seed(getattr(args, "seed", 0))
    print(figure_from_run(run, kind, Path(output or run.run_dir / f"{kind}.png"), n=args.n, **options))
    return 0


def _draw_several(args) -> int:
    """Reopen each run's best model and draw them side by side (compare, latent)."""
    import pyro

    from pyro_vae.runs import MULTI_RUN_KINDS, figure_from_runs, open_run

    if args.kind not in MULTI_RUN_KINDS:
        raise PyroVAEError(f"--kind {args.kind} draws one run; give one run directory (several are overlaid only "
                           f"by --kind curves, and drawn side by side by --kind {' or '.join(MULTI_RUN_KINDS)}).")
    runs = [open_run(Path(run_dir), "best", args.device) for run_dir in args.run_dirs]
    pyro.set_rng_seed(args.seed)
    print(figure_from_runs(runs, args.kind, Path(args.output), n=min(args.n, 64), limit=args.limit, seed=args.seed))
    return 0


def _check_n(n: int, kind: str) -> None:
    """Refuse -n above what figure ``kind`` draws (rather than draw fewer without a word)."""
    if n > N_CAPS[kind]:
        raise ConfigError(f"-n {n} is more than the {kind} figure draws (at most {N_CAPS[kind]}); give -n "
                          f"{N_CAPS[kind]} or less.")


def _plot_options(args) -> None:
    """Refuse each option of ``plot`` that --kind does not read (:data:`PLOT_OPTIONS`),
    and -n above the kind's cap; then fill in the defaults of the options not given."""
    uses = PLOT_OPTIONS[args.kind]
    for name in PLOT_DEFAULTS:
        if getattr(args, name) is not None and name not in uses:
            readers = plot_option_readers(name)
            flag = "-n" if name == "n" else f"--{name.replace('_', '-')}"
            raise ConfigError(f"{flag} has no effect with --kind {args.kind} (it is for --kind "
                              f"{', '.join(readers)}); drop it.")
    if args.n is not None:
        _check_n(args.n, args.kind)
    if args.device is not None and args.kind in ("curves", "sweep"):  # drawn from metrics.csv/summary.json alone
        raise ConfigError(f"--device has no effect with --kind {args.kind}, which is drawn from the recorded "
                          "metrics without loading a model; drop it.")
    by_index, by_name = (args.index_a, args.index_b) != (None, None), (args.image_a, args.image_b) != (None, None)
    if by_index and by_name:  # the file names choose the two images; the indices would be ignored
        raise ConfigError("--index-a/--index-b and --image-a/--image-b both choose the two images to interpolate "
                          "between; give one pair.")
    args.limit_given = args.limit is not None  # a VAE's manifold reads no images: a given --limit is refused there
    for name, default in PLOT_DEFAULTS.items():
        if getattr(args, name) is None and (name, args.kind) != ("n", "samples"):  # samples: as `sample`'s
            setattr(args, name, min(default, N_CAPS.get(args.kind, default)) if name == "n" else default)


def cmd_sample(args) -> int:
    if args.n is not None:
        _check_n(args.n, "samples")
    return _draw(args, "samples", args.output, label=args.label)


def cmd_reconstruct(args) -> int:
    _check_n(args.n, "reconstructions")
    return _draw(args, "reconstructions", args.output)


def cmd_plot(args) -> int:
    _plot_options(args)
    one_sweep = len(args.run_dirs) == 1 and (Path(args.run_dirs[0]) / "sweep.json").is_file()
    if args.kind in ("curves", "sweep") and (len(args.run_dirs) > 1 or args.kind == "sweep" or one_sweep):
        from pyro_vae.experiments import compare

        records = compare.collect_runs(args.run_dirs)
        if args.kind == "sweep" and len(args.run_dirs) == 1 and not one_sweep:
            compare.check_metric(records, args.metric)  # a metric the run lacks is named first
            raise PyroVAEError(f"--kind sweep draws a metric against each setting a sweep varies, and "
                               f"{args.run_dirs[0]} is a single run (it has no sweep.json); give a sweep directory "
                               "(the --sweep-dir of pyro-vae sweep) or several run directories.")
        if args.kind == "curves":
            print(compare.plot_overlaid_curves(records, Path(args.output)))
        else:
            print(compare.plot_sweep_figure(records, Path(args.output), args.metric))
        for note in compare.unfinished_notes(args.run_dirs):  # left out of the figure, as of compare's table
            print(note.replace("not in the table", "not in the figure", 1))
        return 0
    if args.limit < 2:
        raise PyroVAEError("--limit must be at least 2.")
    if len(args.run_dirs) > 1:
        return _draw_several(args)
    args.run_dir = args.run_dirs[0]
    return _draw(args, args.kind, args.output, limit=args.limit if args.limit_given else None, attribute=args.attribute,
                 attribute_file=args.attribute_file, index_a=args.index_a, index_b=args.index_b,
                 image_a=args.image_a, image_b=args.image_b, label=args.label, seed=args.seed)


def cmd_compare(args) -> int:
    from pyro_vae.experiments import compare

    if args.metric is not None and not args.figure:
        raise ConfigError(f"--metric {args.metric} has no effect without --figure (it is the figure's quantity; "
                          "the table shows every metric); drop it or add --figure FILE.")
    args.metric = args.metric or "test_elbo"
    if args.output and (args.output.endswith(("/", os.sep)) or Path(args.output).name in ("", "..")):
        args.output = str(Path(args.output) / "compare")  # "-o DIR/": the tables in DIR, as a sweep's in SWEEP_DIR
    if args.output and Path(args.output).suffix in (".csv", ".md"):  # "-o table.csv": the prefix table, not table.csv.csv
        args.output = str(Path(args.output).with_suffix(""))
    records = compare.collect_runs(args.paths)
    reference = compare.read_run(Path(args.reference)) if args.reference else None
    if reference is not None:
        compare.reference_examples(reference)  # refused before the table is printed
    if args.output:  # a missing folder is made when the tables are written
        for suffix in (".csv", ".md", "-paired.csv", "-paired.md"):
            check_output(Path(f"{args.output}{suffix}"))
    if args.figure:
        check_output(Path(args.figure), "--figure")
        compare.check_sweep_figure(records, args.metric)  # before the table is printed
    columns, rows = compare.compare_table(records)
    # the unit of the bare numbers, then the rows whose numbers are of kinds that cannot be ranked
    notes = compare.unit_notes(columns) + compare.kind_notes(records) + compare.unfinished_notes(args.paths)
    print(compare.to_markdown(columns, rows, notes), end="")
    prefix = args.output
    if prefix is None and len(args.paths) == 1 and (Path(args.paths[0]) / "sweep.json").is_file():
        prefix = Path(args.paths[0]) / "compare"
    written = compare.write_tables(columns, rows, Path(prefix), notes) if prefix else []
    if reference is not None:
        records = [r for r in records if r.run_dir.resolve() != reference.run_dir.resolve()] + [reference]
    elif len(records) == 2 and all(r.examples() is not None for r in records):
        reference = records[0]
    paired = []
    if reference is not None:
        paired, refused = compare.paired_table(records, reference)
        for record, reason in refused:  # a kind's reason is in the table's note, once
            noted = any(reason in note for note in notes)
            print(f"\nno paired difference of {record.run_dir} against {reference.run_dir}: "
                  + ("their test log p(x) cannot be ranked (see the note above for why)."
                     if noted else f"{reason}."))
        if paired:
            paired_columns = list(paired[0])
            print(f"\npaired difference of test log p(x) against {reference.run_dir} "
                  "(nats per example, on the images both evaluated):")
            print(compare.to_markdown(paired_columns, paired), end="")
            if prefix:
                written += compare.write_tables(paired_columns, paired, Path(f"{prefix}-paired"), [
                    f"Paired difference of test log p(x) against {reference.run_dir}, in nats per example, on the "
                    "images both evaluated."])
    if prefix and not paired:  # an earlier comparison's paired table would pass for this one's
        for path in compare.remove_stale_paired_tables(Path(prefix)):
            print(f"\nremoved {path}: the paired table of an earlier comparison, which this one (no paired "
                  "difference) does not replace")
    if args.figure:
        written.append(compare.plot_sweep_figure(records, Path(args.figure), args.metric))
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_sweep(args) -> int:
    from pyro_vae.experiments import sweep

    sweep_dir = Path(args.sweep_dir)
    processes = os.environ.get("WORLD_SIZE", "1")
    if processes.isdigit() and int(processes) > 1:  # every rank ran the whole sweep, racing on one study
        raise ConfigError(f"sweep runs each of its trainings in one process, but torchrun started {processes}, which "
                          f"would each run the whole sweep in {sweep_dir}; launch it without torchrun (--workers N "
                          "trains N runs at once).")

    def log(line: str) -> None:
        print(line, flush=True)  # several worker processes share the terminal or log file

    sweep.quiet_optuna()  # the program's choice; the library leaves Optuna's logging as it is
    if args.join:  # one of the --workers processes: the parent made the study and its queue
        sweep.run_worker(sweep.load_spec(sweep_dir), sweep_dir, args.storage, args.worker_index, log)
        return 0
    raw, table = sweep.split_sweep_table(sweep.read_toml(args.config), args.config) if args.config else ({}, {})
    base = _apply_flags(Config.from_dict(raw, source=args.config or "the configuration"), args)
    spec = sweep.build_spec(base, table, args.grid, args.search, args.seeds, args.trials, args.metric, args.sampler)
    for key, value in vars(args).items():  # a flag the sweep's own values replace in every run
        name = key.split(".")[-1]
        if key.startswith("cfg:") and value is not None and (name in spec.grid or name in spec.search):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} {value} has no effect: the sweep sets {name} in every run ("
                              f"{'--grid' if name in spec.grid else '--search'}); drop {flag}.")
    rows = sweep.run_sweep(spec, sweep_dir, args.storage, args.workers, log)
    failed = [row for row in rows if row["state"] != "COMPLETE"]
    print(f"{len(rows) - len(failed)} runs complete, {len(failed)} failed; results in {sweep_dir / sweep.RESULTS}")
    for row in failed:
        print(f"failed: {row['run_dir']}: {row['error']}")
    return 1 if failed else 0


COMMANDS = {"compare": cmd_compare, "sweep": cmd_sweep, "plot": cmd_plot, "train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample, "reconstruct": cmd_reconstruct}


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Interrupted` as SIGINT raises KeyboardInterrupt
    (the training loop installs its own handlers for both while it runs); restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    with sigterm_as_interrupt():  # from the first instant of the command, before any file is opened
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args, began = None, False
    try:
        args = build_parser().parse_args(argv)  # imports torch and Pyro (1-3 s)
        if getattr(args, "seed", None) is not None:  # evaluate, sample, plot (train's is checked with its config)
            check_seed(args.seed, "--seed")
        from pyro_vae.memory import fix_mmap_threshold
        from pyro_vae.runs import flushed_denormals

        fix_mmap_threshold()  # a program's choice, not the library's: bounded peak memory (pyro_vae.memory)
        with flushed_denormals():  # subnormal floats slow CPU arithmetic many times over
            began = True
            return COMMANDS[args.command](args)
    except TrainingInterrupted as err:
        print(f"pyro-vae: {err}", file=sys.stderr)
        return 128 + err.signum
    except PyroVAEError as err:
        if args is not None and args.debug:
            traceback.print_exc()
        print(f"pyro-vae: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt as err:
        message, code = interrupted_message(err, began)
        print(message, file=sys.stderr)
        return code
