"""This tree's training step against another commit's, in one process: the other commit's
``src/pyro_vae`` is exported (``git archive``) to a temporary folder as a package named
``pyro_vae_base``, so both are imported side by side; their steps and the hand-written
fused-Adam PyTorch step of ``train_step.py`` are timed alternately (CPU time of the thread).
``--same`` instead trains both for 20 steps from one seed (MLP and conv; elbo, analytic-kl,
iwae; 1 and 3 particles) and says whether losses, parameters and prior draws are bit for bit
equal, and where not, by how much the losses and parameters differ.

    python benchmarks/step_ab.py --base REF [--batch 2 128 512] [--repeats 100] [--analytic] [--same]
"""

from __future__ import annotations

import argparse
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pyro
import torch

from common import ROOT, alternate, git_commit, median, write_result
from train_step import LATENT, step_candidates


def export_base(ref: str, folder: Path) -> None:
    """``ref``'s ``src/pyro_vae`` as package ``pyro_vae_base`` under ``folder``."""
    archive = subprocess.run(["git", "archive", ref, "src/pyro_vae"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / "pyro_vae_base"
    (folder / "src" / "pyro_vae").rename(package)
    for path in package.rglob("*.py"):
        path.write_text(re.sub(r"\bpyro_vae\b", "pyro_vae_base", path.read_text()))


def modules(name: str):
    return [importlib.import_module(f"{name}.{m}") for m in ("build", "config", "inference.objectives", "inference.train")]


def own_param_store(step):
    """``step`` run with a param store of its own. Both trees name their parameters alike
    (``encoder.body.0.weight``, ...), so in one shared store the second tree's names are bound
    to the first tree's tensors, and its lean networks' parameter statements are never idle:
    it would pay Pyro's param statements every step (before issue #16's sixth pass the base
    did, which overstated this tree's gain). Swapping the store's three dicts costs nothing."""
    store = pyro.get_param_store()
    own = ({}, {}, {})

    def run():
        saved = store._params, store._param_to_name, store._constraints
        store._params, store._param_to_name, store._constraints = own
        try:
            step()
        finally:
            store._params, store._param_to_name, store._constraints = saved
    return run


def library_step(name: str, network: str, batch: int, analytic: bool, x: torch.Tensor):
    build, config, objectives, train = modules(name)
    model, guide = build.build_vae(config.ModelConfig(network=network, latent_dim=LATENT, hidden_dims=[400],
                                                      conv_channels=[32, 64]), (1, 28, 28))
    objective = objectives.make_objective("analytic-kl" if analytic else "elbo")
    optimizer = train.make_adam([*model.parameters(), *guide.parameters()], 1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        objective.differentiable_loss(model, guide, x).backward()
        optimizer.step()
    return step


def same_numbers(name: str, network: str, objective: str, particles: int):
    build, config, objectives, train = modules(name)
    torch.manual_seed(0)
    pyro.clear_param_store()
    channels = {"conv_channels": [4, 8]} if network == "conv" else {}  # build_vae refuses them for an MLP
    model, guide = build.build_vae(config.ModelConfig(network=network, latent_dim=8, hidden_dims=[32], **channels),
                                   (1, 28, 28))
    loss_fn = objectives.make_objective(objective, num_particles=particles)
    optimizer = train.make_adam([*model.parameters(), *guide.parameters()], 1e-3)
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(20):
        x = torch.bernoulli(torch.full((16, 1, 28, 28), 0.3), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn.differentiable_loss(model, guide, x)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    torch.manual_seed(5)
    with torch.no_grad():
        draws = model.sample_prior(3)
    return losses, [p.detach().clone() for p in [*model.parameters(), *guide.parameters()]], draws


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the git commit (or branch) to compare with")
    parser.add_argument("--batch", type=int, nargs="+", default=[2, 128, 512])
    parser.add_argument("--repeats", type=int, default=100, help="steps per candidate at batch 128 (scaled by size)")
    parser.add_argument("--analytic", action="store_true", help="the analytic-KL ELBO (default: Monte Carlo KL)")
    parser.add_argument("--same", action="store_true", help="check that both give the same numbers instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    with tempfile.TemporaryDirectory() as tmp:
        export_base(args.base, Path(tmp))
        sys.path.insert(0, tmp)
        if args.same:
            for network in ("mlp", "conv"):
                for objective in ("elbo", "analytic-kl", "iwae"):
                    for particles in (1, 3):
                        a, b = (same_numbers(name, network, objective, particles) for name in ("pyro_vae", "pyro_vae_base"))
                        equal = a[0] == b[0] and all(map(torch.equal, a[1], b[1])) and torch.equal(a[2], b[2])
                        loss_gap = max(abs(x - y) / abs(y) for x, y in zip(a[0], b[0]))
                        param_gap = max((p - q).abs().max().item() for p, q in zip(a[1], b[1]))
                        print(f"{network} {objective} particles={particles}: "
                              + ("identical" if equal else f"DIFFERENT: losses by up to {loss_gap:.1e} relative "
                                 f"over 20 steps, parameters by up to {param_gap:.1e}"))
            return
        rows = []
        for batch in args.batch:
            x = torch.bernoulli(torch.full((batch, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(0))
            candidates = {"pytorch_fused_adam": step_candidates("mlp", batch, args.analytic)["pytorch_fused_adam"],
                          "this_tree": own_param_store(library_step("pyro_vae", "mlp", batch, args.analytic, x)),
                          "base": own_param_store(library_step("pyro_vae_base", "mlp", batch, args.analytic, x))}
            repeats = max(10, args.repeats * 128 // max(batch, 43))
            med = {k: 1000 * median(v) for k, v in alternate(candidates, repeats, warmup=5, clock=time.thread_time).items()}
            row = {"batch": batch, "repeats": repeats, "median_ms": med,
                   "this_tree_over_base": med["this_tree"] / med["base"],
                   "this_tree_over_pytorch": med["this_tree"] / med["pytorch_fused_adam"],
                   "base_over_pytorch": med["base"] / med["pytorch_fused_adam"]}
            rows.append(row)
            print(f"batch {batch}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in med.items())
                  + f" | this tree / base {row['this_tree_over_base']:.3f}, / PyTorch {row['this_tree_over_pytorch']:.3f}"
                  f" (base / PyTorch {row['base_over_pytorch']:.3f})", flush=True)
    kl = "analytic" if args.analytic else "monte-carlo"
    print(write_result(f"step_ab-{kl}", {"commit": git_commit(), "base": args.base, "kl": kl, "rows": rows,
                                         "load_average": __import__("os").getloadavg()}))


if __name__ == "__main__":
    main()
