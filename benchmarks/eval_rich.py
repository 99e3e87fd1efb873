"""Evaluation of the rich models (issue #19/#16): this tree's importance-sampled log p(x)
against another commit's, in one process, on the same images and the same draws.

The other commit's ``src/pyro_vae`` is imported beside this one as ``pyro_vae_base``
(``step_ab.export_base``); each model is built in both trees with the same parameters, and
the two estimators are called alternately (CPU time of the thread, one torch thread, each
tree with its own param store), each call seeded alike, so both see the same draws. Reported
per model: CPU seconds per call, the ratio base / this tree, and the largest difference
between the two trees' per-image estimates (nats; float rounding only).

Models: ``vampprior`` (gated 300-300 MLP, 40-d z, 500 pseudo-inputs), ``vae`` (the same
networks, standard prior), ``iaf`` (the VAE with 4 IAF steps in the guide), ``hvae`` (the
IWAE paper's two-layer model). By default they are built with random parameters (the
VampPrior's pseudo-inputs set to random binary images, so its components spread as a trained
one's do) on random binary images; ``--run NAME=RUN_DIR`` scores a trained run's best
checkpoint instead, on the first ``--examples`` static binarized-MNIST test images
(``PYRO_VAE_SHARED_DATA``). Run directories are only read.

    python benchmarks/eval_rich.py [--base REF] [--models vampprior vae iaf hvae] [--k 5000]
                                   [--examples 4] [--repeats 3] [--allocator cli|default]
                                   [--run vampprior=DIR ...]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

import pyro
import torch

from common import alternate, git_commit, median, write_result
from step_ab import export_base, own_param_store

#: The commit before the pass on the rich models' evaluation (issue #19/#16, ninth session).
BEFORE = "e78a13c"

#: ModelConfig options of each synthetic model (the published VampPrior / IAF / IWAE networks).
MODELS = {
    "vampprior": dict(latent_dim=40, hidden_dims=[300, 300], activation="gated", scale_transform="exp",
                      prior="vamp", pseudo_inputs=500),
    "vae": dict(latent_dim=40, hidden_dims=[300, 300], activation="gated", scale_transform="exp"),
    "iaf": dict(latent_dim=40, hidden_dims=[300, 300], activation="gated", scale_transform="exp",
                flow="iaf", flow_steps=4),
    "hvae": dict(model="hvae", latent_dim=100, top_latent_dim=50, hidden_dims=[200, 200],
                 top_hidden_dims=[100, 100], activation="tanh"),
}


def synthetic(name: str, package: str, state: dict | None):
    """(model, guide) of ``MODELS[name]`` built by ``package``; parameters from ``state``
    (``{"model": ..., "guide": ...}``), or random ones (seed 0) when None."""
    build = importlib.import_module(f"{package}.build")
    config = importlib.import_module(f"{package}.config")
    torch.manual_seed(0)
    model, guide = build.build_vae(config.ModelConfig(**MODELS[name]), (1, 28, 28))
    if state is None:
        with torch.no_grad():
            for parameter in guide.parameters():  # off the IAF steps' identity start
                parameter.add_(0.05 * torch.randn_like(parameter))
            if name == "vampprior":
                model.latent_prior.set_pseudo_inputs(torch.bernoulli(torch.full((500, 1, 28, 28), 0.15)))
    else:
        model.load_state_dict(state["model"]), guide.load_state_dict(state["guide"])
    return model.eval(), guide.eval()


def trained(run_dir: str, package: str):
    """(model, guide) of a run's best checkpoint, opened by ``package``."""
    runs = importlib.import_module(f"{package}.runs")
    run = runs.open_run(Path(run_dir), "best", "cpu")
    return run.model, run.guide


def test_images(n: int) -> torch.Tensor:
    from pyro_vae.data.datasets import as_tensor, load_dataset

    data = load_dataset("binarized-mnist", os.environ.get("PYRO_VAE_SHARED_DATA", ""))  # 0/1 as stored
    return as_tensor(data.test.images)[:n]


def estimator(package: str, model, guide, x: torch.Tensor, k: int, seed: int, out: dict, key: str):
    """A zero-argument call of ``package``'s estimator with the draws of ``seed``; its
    per-image estimates land in ``out[key]``."""
    loglik = importlib.import_module(f"{package}.inference.loglik")

    def call():
        pyro.set_rng_seed(seed)
        out[key] = loglik.importance_log_likelihood(model, guide, x, k=k).log_likelihood
    return own_param_store(call)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BEFORE, help=f"the git commit (or branch) to compare with (default "
                        f"{BEFORE}, the commit before this pass)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--examples", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--allocator", choices=["cli", "default"], default="cli",
                        help="cli: glibc's thresholds fixed as `pyro-vae evaluate` fixes them (both candidates); "
                             "default: glibc's dynamic thresholds, as a library user gets them")
    parser.add_argument("--run", nargs="*", default=[], metavar="NAME=RUN_DIR",
                        help="score a trained run's best checkpoint for model NAME (read only)")
    args = parser.parse_args()
    runs = dict(item.split("=", 1) for item in args.run)
    if args.allocator == "cli":
        from pyro_vae.memory import fix_mmap_threshold

        fix_mmap_threshold()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as pyro-vae's evaluation does; applies to both candidates
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        export_base(args.base, Path(tmp))
        sys.path.insert(0, tmp)
        for name in args.models:
            if name in runs:
                parts = {package: trained(runs[name], package) for package in ("pyro_vae", "pyro_vae_base")}
                x = test_images(args.examples)
            else:
                model, guide = synthetic(name, "pyro_vae", None)
                state = {"model": model.state_dict(), "guide": guide.state_dict()}
                parts = {"pyro_vae": (model, guide), "pyro_vae_base": synthetic(name, "pyro_vae_base", state)}
                x = torch.bernoulli(torch.full((args.examples, 1, 28, 28), 0.15),
                                    generator=torch.Generator().manual_seed(1))
            out = {}
            candidates = {"this_tree": estimator("pyro_vae", *parts["pyro_vae"], x, args.k, 0, out, "this_tree"),
                          "base": estimator("pyro_vae_base", *parts["pyro_vae_base"], x, args.k, 0, out, "base")}
            times = alternate(candidates, args.repeats, warmup=1, clock=time.thread_time)
            med = {key: median(value) for key, value in times.items()}
            gap = (out["this_tree"].double() - out["base"].double()).abs().max().item()
            row = {"model": name, "source": runs.get(name, "random parameters"), "k": args.k,
                   "examples": args.examples, "repeats": args.repeats, "median_cpu_s": med,
                   "base_over_this_tree": med["base"] / med["this_tree"], "max_abs_difference_nats": gap,
                   "mean_log_likelihood": out["this_tree"].mean().item()}
            rows.append(row)
            print(f"{name} ({row['source']}), K={args.k}, {args.examples} images: this tree {med['this_tree']:.2f} s, "
                  f"base {med['base']:.2f} s CPU: {row['base_over_this_tree']:.2f}x; estimates differ by at most "
                  f"{gap:.1e} nats (mean {row['mean_log_likelihood']:.3f})", flush=True)
    suffix = "-runs" if runs else ""
    print(write_result(f"eval_rich{suffix}", {"commit": git_commit(), "base": args.base, "rows": rows,
                                              "allocator": args.allocator,
                                              "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
