"""A colour VAE on a generated image folder in CelebA's layout (coloured shapes whose
colour, side and form are the attributes), through the CLI; plus the cost of decoding the
folder with and without worker processes, and of reopening it from the memory-mapped cache.

    python benchmarks/image_folder.py [--images 2000] [--size 32] [--epochs 20]

Writes benchmarks/results/image_folder.json and docs/figures/shapes-*.png.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import ROOT, write_result

sys.path.insert(0, str(ROOT / "tests"))
from image_folders import celeba_folder, red_channel_along_red_vector  # noqa: E402

from pyro_vae.cli import main as cli  # noqa: E402
from pyro_vae.data.folders import decoded_images, scan_image_folder  # noqa: E402
from pyro_vae.runs import open_run, read_metrics  # noqa: E402

FIGURES = ROOT / "docs" / "figures"
ALPHAS = (-2, -1, 0, 1, 2)


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="pyro-vae-shapes-"))
    try:
        data = work / "shapes"
        celeba_folder(data, n=args.images, seed=5)
        layout = scan_image_folder(data)
        _, decode_seconds = timed(lambda: decoded_images(layout, args.size))
        _, decode_workers_seconds = timed(lambda: decoded_images(layout, args.size, workers=2))
        _, cache_write_seconds = timed(lambda: decoded_images(layout, args.size, workers=2, cache_dir=work / "cache"))
        _, cache_read_seconds = timed(lambda: decoded_images(layout, args.size, cache_dir=work / "cache"))

        run = work / "run"
        command = ["train", "--dataset", "image-folder", "--data-dir", str(data), "--image-size", str(args.size),
                   "--network", "conv", "--conv-channels", "32,64,64", "--hidden-dims", "256", "--batch-norm", "true",
                   "--latent-dim", "16", "--likelihood", "gaussian-learned-per-channel", "--epochs", str(args.epochs),
                   "--batch-size", "64", "--learning-rate", "1e-3", "--run-dir", str(run)]
        with contextlib.redirect_stdout(io.StringIO()):
            code, train_seconds = timed(lambda: cli(command))
        assert code == 0, code
        history = read_metrics(run)
        opened = open_run(run)
        dataset = opened.dataset()
        red_channel = red_channel_along_red_vector(opened, ALPHAS).tolist()
        FIGURES.mkdir(parents=True, exist_ok=True)
        for kind, extra in (("arithmetic", ["--attribute", "Red"]), ("samples", []), ("reconstructions", []),
                            ("interpolate", ["--image-a", dataset.test.names[0], "--image-b", dataset.test.names[3]])):
            cli(["plot", str(run), "--kind", kind, *extra, "-o", str(FIGURES / f"shapes-{kind}.png")])
        write_result("image_folder", {
            "images": args.images, "size": args.size, "epochs": args.epochs,
            "train_command": "pyro-vae " + " ".join(command).replace(str(work), "$TMP"),
            "splits": {"train": len(dataset.train), "valid": len(dataset.valid), "test": len(dataset.test)},
            "valid_elbo_first_epoch": history[0]["valid_elbo"], "valid_elbo_last_epoch": history[-1]["valid_elbo"],
            "unit": "nats per image (Gaussian densities on [0, 1] pixels, so positive)",
            "train_seconds": train_seconds,
            "red_vector_mean_red_channel_by_alpha": dict(zip(map(str, ALPHAS), red_channel)),
            "decode_seconds": {"in_process": decode_seconds, "two_workers": decode_workers_seconds,
                               "two_workers_writing_cache": cache_write_seconds,
                               "reopening_cache": cache_read_seconds},
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
