"""``pyro-vae evaluate RUN --label-fidelity``: how well a labelled run's label controls the
class it draws, judged by an independent classifier, and how much its z keeps of the class
(see :mod:`pyro_vae.inference.fidelity` for the measures, :mod:`pyro_vae.inference.judge`
for the classifier and its cache)."""

from __future__ import annotations

from pathlib import Path

from pyro_vae.errors import ConfigError, DataError

#: The file ``evaluate --label-fidelity`` writes in the run directory (unless -o).
FIDELITY_FILE = "label_fidelity.json"
#: How decoded images are formed, said in the JSON and the console.
DECODED = "the likelihood's mean image E[x | z, y] (not a sample)"


def check_labelled(run) -> None:
    """Refuse, with one sentence, a run whose model has no label or whose data set has none."""
    model = run.config.model.model
    if not getattr(run.model, "num_classes", 0) or not hasattr(run.guide, "encode"):
        raise ConfigError(f"--label-fidelity measures how a label controls a labelled model (--model cvae, m2, m1m2 or adgm), "
                          f"but {run.run_dir} is a --model {model} run with no label; drop --label-fidelity.")


def real_images(run):
    """The run's data set as the judge sees it: all its training images (whatever
    ``--train-limit``), grey levels (never binarized), its labels."""
    from dataclasses import replace

    from pyro_vae.runs import check_own_data, open_dataset

    check_own_data(run.run_dir, run.checkpoint, run.config)  # a fit() run's data may not be its config's
    config = replace(run.config, data=replace(run.config.data, binarize="none", train_limit=0))
    dataset = open_dataset(config, run_dir=run.run_dir)
    if dataset.train.labels is None or dataset.test.labels is None:
        raise DataError(f"--label-fidelity needs a data set with class labels, and '{dataset.name}' has none; "
                        "train and measure a labelled model on labelled data.")
    return dataset


def measure_run(run, per_class: int = 100, grid_images: int = 1000, seed: int = 0, cache_dir: str | None = None,
                log=print, split: str = "test") -> dict:
    """The label fidelity of a reopened CVAE, M2, M1+M2 or ADGM run (prior samples and style grid), the
    judge's own accuracy, and a linear probe of z for the class; the JSON record.

    ``split`` names the real images the style grid encodes and the probe is scored on: "test"
    for the number one reports, "valid" to choose between settings without reading the test
    set (the prior samples and the judge are the same either way)."""
    import torch

    from pyro_vae.inference.fidelity import encode_all, linear_probe, prior_fidelity, style_grid_fidelity
    from pyro_vae.inference.judge import JudgeCache, JudgeSettings
    from pyro_vae.runs import evaluation_examples, label_generator

    check_labelled(run)
    if split == "train":  # the probe (and the judge) are fitted to the training images: in-sample numbers
        raise ConfigError("--label-fidelity on --split train would score the linear probe of z on the training "
                          "images it is fitted to (an in-sample accuracy, too high); give --split valid or test.")
    if per_class < 1 or grid_images < 1:
        raise ConfigError("--fidelity-samples and --fidelity-images must be at least 1.")
    real = real_images(run)
    cache = JudgeCache(Path(cache_dir).expanduser()) if cache_dir else JudgeCache()
    judge = cache.load_or_train(real, JudgeSettings(), log=log)
    if judge.record["num_classes"] != run.model.num_classes:
        raise DataError(f"the data set has {judge.record['num_classes']} classes but the model "
                        f"{run.model.num_classes}; measure the run on the data it was trained on.")
    generator = label_generator(run)
    prior = prior_fidelity(generator, judge.predict, per_class, seed, run.device)
    grid_part, chosen, _ = evaluation_examples(run, split, grid_images, "random", seed, strict=False)
    grid, swapped = style_grid_fidelity(generator, judge.predict, grid_part.images, grid_part.labels)
    dataset = run.dataset()
    train, scored = dataset.scored_split("train"), dataset.scored_split(split)
    probe = linear_probe(encode_all(generator, train.images, train.labels),
                         train.labels, encode_all(generator, scored.images, scored.labels), scored.labels,
                         run.model.num_classes)
    record = judge.record
    return {
        "decoded_images": DECODED,
        "seed": seed,
        "judge": {key: record[key] for key in ("dataset", "data_sha256", "settings", "train_images", "best_epoch",
                                               "valid_accuracy", "test_accuracy", "test_accuracy_stderr",
                                               "test_images", "test_accuracy_per_class", "selection")}
                 | {"from_cache": judge.from_cache, "cache": str(cache.root)},
        "judge_test_accuracy": record["test_accuracy"],
        "judge_test_accuracy_stderr": record["test_accuracy_stderr"],
        "prior": {"source": "z ~ p(z | y), decoded with y", "per_class_samples": per_class, "seed": seed,
                  **prior.to_dict()},
        "style_grid": {"source": f"z = mean of q(z | x, own label) of real {split} images, decoded with every label",
                       # "test_images": the key of earlier records, kept whatever the split
                       **chosen, "test_images": len(grid_part), **grid.to_dict(),
                       "swapped": {"fidelity": swapped.value, "stderr": swapped.stderr, "images": swapped.n}},
        "z_probe_accuracy": probe.accuracy,
        "z_probe_accuracy_stderr": probe.stderr,
        "z_probe": {"what": "multinomial logistic regression from the mean of q(z | x, y) of the training images "
                            f"to their class, scored on the {split} images", "split": split, **probe.to_dict()},
        "stderr_is": "binomial: sqrt(p (1 - p) / n) over the images judged",
        "torch": torch.__version__,
    }


def describe(result: dict) -> str:
    """The console's lines for a fidelity record."""
    prior, grid, probe = result["prior"], result["style_grid"], result["z_probe"]
    pct = lambda p, se: f"{100 * p:.2f}% ± {100 * se:.2f}%"  # noqa: E731
    split = grid.get("split", "test")  # records written before --split had only test images
    return (f"label fidelity of prior samples {pct(prior['fidelity'], prior['stderr'])} ({prior['images']} images, "
            f"{prior['per_class_samples']} per label, seed {prior['seed']})\n"
            f"label fidelity of the style grid {pct(grid['fidelity'], grid['stderr'])} ({grid['images']} cells: "
            f"{grid['test_images']} {split} images x every label; "
            f"{pct(grid['swapped']['fidelity'], grid['swapped']['stderr'])} in the cells whose label is not the "
            f"image's own)\n"
            f"judged by a classifier of real images with test accuracy "
            f"{pct(result['judge_test_accuracy'], result['judge_test_accuracy_stderr'])}; decoded images are "
            f"{DECODED}; ± is the binomial standard error\n"
            f"linear probe of z for the class: {split} accuracy {pct(probe['accuracy'], probe['stderr'])} (chance "
            f"{100 * probe['chance']:.2f}%; the further above chance, the more z carries the class, which lets the "
            f"decoder ignore y)")
