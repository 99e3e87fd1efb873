"""Pyro's own semi-supervised VAE example, ``examples/vae/ss_vae_M2.py``, run unmodified on
Fashion-MNIST (or MNIST): the comparison row of issue #14.

The example reads MNIST through ``pyro.contrib.examples.util.MNIST``, a torchvision data set,
and torchvision cannot be imported beside the CPU torch of this project. So this script puts
a stand-in for that one class (and for ``visdom``, which the example imports for optional
plots) into ``sys.modules`` and then loads the example's own files from a Pyro checkout: the
model, the guide, the auxiliary loss, its data split (``utils/mnist_cached.py``: the last
10,000 training images for validation, ``--sup-num`` labels balanced over the classes, the
rest unlabelled) and its training loop all run as Pyro ships them. The stand-in gives the
images as uint8 ``[N, 28, 28]`` and the labels as int64, as torchvision's class does.

    git clone --branch 1.9.1 https://github.com/pyro-ppl/pyro ~/pyro-1.9.1
    python benchmarks/pyro_ss_vae_m2.py --pyro ~/pyro-1.9.1 --dataset fashion-mnist --seed 0 \\
        --out benchmarks/results/pyro-ss-vae-m2-fashion-100-s0.json -- \\
        -n 9 --aux-loss -alm 46 -enum parallel -sup 100 -zd 50 -hl 500 -lr 0.00042 -b1 0.95 -bs 100

Everything after ``--`` is the example's own command line (its ``EXAMPLE_RUN``, with
``-sup 100`` and a batch of 100, since the example requires the batch to divide the labels).
The example's log lines (one per epoch: losses, validation and test accuracy; then the test
accuracy at the best validation epoch) are parsed into the JSON file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import sys
import time
import types
from pathlib import Path

import torch

from common import git_commit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from pyro_vae.data.readers import read_idx  # noqa: E402
from pyro_vae.data.sources import SOURCES, locate  # noqa: E402


def idx_dataset(name: str, data_dir: str | None):
    """A stand-in for ``pyro.contrib.examples.util.MNIST`` reading our IDX files of ``name``."""
    source = SOURCES[name]

    class IdxImages:
        def __init__(self, root=None, train=True, download=False, transform=None, target_transform=None):
            split = "train" if train else "test"
            paths = locate(source, data_dir, download=False)
            self.data = torch.from_numpy(read_idx(paths[f"{split}_images"], expected_ndim=3).copy())
            self.targets = torch.from_numpy(read_idx(paths[f"{split}_labels"], expected_ndim=1).astype("int64"))
            self.train = train

        def __len__(self):
            return len(self.data)

    return IdxImages


def load_example(pyro_dir: Path, dataset_class) -> types.ModuleType:
    """Import ``examples/vae/ss_vae_M2.py`` of ``pyro_dir`` with the stand-ins in place."""
    vae_dir = pyro_dir / "examples" / "vae"
    if not (vae_dir / "ss_vae_M2.py").exists():
        raise SystemExit(f"no examples/vae/ss_vae_M2.py under {pyro_dir}: pass a Pyro checkout with --pyro")
    util = types.ModuleType("pyro.contrib.examples.util")
    util.MNIST = dataset_class
    util.get_data_directory = lambda filepath: str(vae_dir / "data")

    def print_and_log(logger, msg):
        print(msg, flush=True)
        if logger is not None:
            logger.write(f"{msg}\n")
            logger.flush()

    util.print_and_log = print_and_log
    sys.modules["pyro.contrib.examples.util"] = util
    visdom = types.ModuleType("visdom")

    class Visdom:  # the example builds one only with --visualize, which main() refuses first
        def __init__(self, *args, **kwargs):
            raise RuntimeError("no visdom here")

    visdom.Visdom = Visdom
    sys.modules["visdom"] = visdom
    sys.path.insert(0, str(vae_dir))  # the example imports its helpers as ``utils.*``
    spec = importlib.util.spec_from_file_location("ss_vae_M2", vae_dir / "ss_vae_M2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_args(argv: list[str]) -> argparse.Namespace:
    """The example's own options (its ``__main__`` block's parser, which we cannot run as it
    asserts Pyro 1.9.1 exactly; these are its options and defaults, 1.9.1)."""
    parser = argparse.ArgumentParser(prog="ss_vae_M2.py")
    parser.add_argument("--cuda", action="store_true")
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("-n", "--num-epochs", default=50, type=int)
    parser.add_argument("--aux-loss", action="store_true")
    parser.add_argument("-alm", "--aux-loss-multiplier", default=46, type=float)
    parser.add_argument("-enum", "--enum-discrete", default="parallel")
    parser.add_argument("-sup", "--sup-num", default=3000, type=float)
    parser.add_argument("-zd", "--z-dim", default=50, type=int)
    parser.add_argument("-hl", "--hidden-layers", nargs="+", default=[500], type=int)
    parser.add_argument("-lr", "--learning-rate", default=0.00042, type=float)
    parser.add_argument("-b1", "--beta-1", default=0.9, type=float)
    parser.add_argument("-bs", "--batch-size", default=200, type=int)
    parser.add_argument("-log", "--logfile", default="./tmp.log", type=str)
    parser.add_argument("--seed", default=None, type=int)
    parser.add_argument("--visualize", action="store_true")
    args = parser.parse_args(argv)
    if args.sup_num % args.batch_size:
        raise SystemExit(f"-sup {args.sup_num:g} is not a multiple of -bs {args.batch_size}: the example needs it to be")
    return args


def check_batch_divides(batch_size: int, cached) -> None:
    """The example's own checks, from its ``__main__`` block: its accuracy divides the count of right
    answers by batches x batch size, so a batch that does not divide a split would misreport it."""
    for what, size in (("training", cached.train_data_size), ("validation", cached.validation_size),
                       ("test", cached.test_size)):
        if size % batch_size:
            raise SystemExit(f"-bs {batch_size} does not divide the {size} {what} images; choose a divisor, e.g. 100")


EPOCH = re.compile(r"^(\d+) epoch: avg losses (.*) validation accuracy ([0-9.]+) test accuracy ([0-9.]+)$")
FINAL = re.compile(r"best validation accuracy ([0-9.]+) corresponding testing accuracy ([0-9.]+) last testing accuracy ([0-9.]+)")


def parse_log(text: str, test_images: int = 10000) -> dict:
    """The example's epochs (1-based here; it prints them from 0) and its final line, with the epoch it
    selected (the first with the highest validation accuracy: it updates on a strict gain) and the
    binomial standard error of the selected test accuracy over ``test_images``."""
    epochs, final = [], {}
    for line in text.splitlines():
        if match := EPOCH.match(line.strip()):
            epochs.append({"epoch": int(match[1]) + 1, "losses": [float(v) for v in match[2].split()],
                           "valid_accuracy": float(match[3]), "test_accuracy": float(match[4])})
        elif match := FINAL.search(line):
            accuracy = float(match[2])
            final = {"best_valid_accuracy": float(match[1]), "test_accuracy_at_best_valid": accuracy,
                     "test_accuracy_at_best_valid_stderr": (accuracy * (1 - accuracy) / test_images) ** 0.5,
                     "last_test_accuracy": float(match[3])}
    if epochs and final:
        best = max(e["valid_accuracy"] for e in epochs)
        final["best_epoch"] = next(e["epoch"] for e in epochs if e["valid_accuracy"] == best)
    return {"epochs": epochs, **final}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyro", type=Path, required=True, help="a Pyro checkout (its examples/vae is run)")
    parser.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "mnist"])
    parser.add_argument("--data-dir", default=None, help="where the data set's IDX files are (as pyro-vae's --data-dir)")
    parser.add_argument("--seed", type=int, default=0, help="the example's --seed")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("example", nargs=argparse.REMAINDER, help="-- then the example's own options")
    args = parser.parse_args()
    argv = args.example[1:] if args.example[:1] == ["--"] else args.example
    for own in ("--seed", "--logfile", "-log"):  # set here; the example's copy would be overridden unseen
        if any(a == own or a.startswith(own + "=") for a in argv):
            raise SystemExit(f"give {own} to this script (--seed, --out), not after --: it sets the example's")
    ex_args = example_args([*argv, "--seed", str(args.seed), "--logfile", str(args.out.with_suffix(".log"))])
    if ex_args.visualize:
        raise SystemExit("--visualize needs a visdom server; leave it out")
    torch.set_num_threads(1)
    example = load_example(args.pyro.expanduser(), idx_dataset(args.dataset, args.data_dir))
    check_batch_divides(ex_args.batch_size, example.MNISTCached)
    start_cpu, start = time.process_time(), time.perf_counter()
    example.main(ex_args)
    cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start
    test_images = example.MNISTCached.test_size  # the example asserts its test set has this many
    result = parse_log(args.out.with_suffix(".log").read_text(), test_images)
    result.update({
        "what": "Pyro's examples/vae/ss_vae_M2.py, unmodified, on " + args.dataset,
        "pyro_examples": str(args.pyro), "example_args": vars(ex_args), "seed": args.seed,
        "test_images": test_images, "cpu_seconds": cpu, "wall_seconds": wall,
        "command": " ".join(["python", *sys.argv]), "commit": git_commit(), "pyro_version": __import__("pyro").__version__,
        "torch_version": torch.__version__, "machine": f"{platform.machine()} {platform.processor()}".strip(),
    })
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
