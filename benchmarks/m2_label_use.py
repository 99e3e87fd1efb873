"""Does an M2 (or M1+M2) run's decoder use its label? (a diagnostic; `make bench` does not run it)

For each run, with the labels-measure judge (an independent classifier of real images,
:mod:`pyro_vae.inference.judge`, cached) and :mod:`pyro_vae.inference.fidelity`:

* label share: for 100 codes z ~ N(0, I) decoded with each of the 10 labels, the share of
  the variance of the decoded mean images (over z and y, summed over pixels) that y
  explains, Var_y(E_z[.]) / Var_{z,y}; 0 when the decoder ignores y;
* prior fidelity: the share of those images the judge assigns to the label they were
  decoded with (with its binomial standard error);
* style-grid fidelity on the cells whose label is not the test image's own (``swapped``).

An M1+M2 run decodes through its M1 (see :func:`pyro_vae.inference.codes.stacked_label_model`).
Writes RUN/label_use.json.

    python benchmarks/m2_label_use.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from pyro_vae.experiments.labels import real_images
from pyro_vae.inference.fidelity import prior_fidelity, style_grid_fidelity
from pyro_vae.inference.judge import JudgeCache, JudgeSettings
from pyro_vae.runs import label_generator, open_run


@torch.no_grad()
def label_share(generator, per_class: int = 100, seed: int = 0) -> float:
    k = generator.num_classes
    torch.manual_seed(seed)
    y = torch.arange(k).repeat_interleave(per_class)
    z = generator.sample_prior(y[:per_class]).repeat(k, 1)
    means = generator.decode(z, y).reshape(k, per_class, -1)
    centre = means.mean((0, 1))
    return ((means.mean(1, keepdim=True) - centre).pow(2).sum(-1).mean()
            / (means - centre).pow(2).sum(-1).mean()).item()


def main(paths):
    for path in paths:
        run = open_run(Path(path))
        generator = label_generator(run)  # M1+M2 decodes through its M1 run
        real = real_images(run)
        judge = JudgeCache().load_or_train(real, JudgeSettings(), log=print)
        prior = prior_fidelity(generator, judge.predict, 100, 0)
        test = real.test.head(500)
        _, swapped = style_grid_fidelity(generator, judge.predict, test.images, test.labels)
        record = {"label_share": label_share(generator), "prior_fidelity": prior.overall.value,
                  "prior_fidelity_stderr": prior.overall.stderr,
                  "prior_fidelity_per_class": [p.value for p in prior.per_class],
                  "swapped_style_fidelity": swapped.value, "swapped_style_fidelity_stderr": swapped.stderr,
                  "judge_test_accuracy": judge.record["test_accuracy"], "style_test_images": 500, "seed": 0}
        (run.run_dir / "label_use.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"{path}: label share {record['label_share']:.3f}; prior fidelity {100 * prior.overall.value:.1f}% "
              f"± {100 * prior.overall.stderr:.1f} (per class {[round(100 * p.value) for p in prior.per_class]}); "
              f"swapped style cells {100 * swapped.value:.1f}%; judge test accuracy "
              f"{100 * judge.record['test_accuracy']:.2f}%")


if __name__ == "__main__":
    main(sys.argv[1:])
