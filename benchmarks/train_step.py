"""Training-step time: pyro-vae against a plain PyTorch VAE written here, same networks,
same batch, same objective (Monte Carlo KL against Monte Carlo KL, analytic against
analytic), timed alternately in one process. Also Pyro's classic SVI step, pyro-vae's
objective read through ``poutine.trace`` + ``poutine.replay`` (its path before issue #16's
second pass), and an epoch of the `make demo` model on Fashion-MNIST. ``--clock cpu``
times the thread's CPU time (``time.thread_time``) instead of wall time, for a loaded machine.

    python benchmarks/train_step.py [--repeats 100] [--no-epoch] [--clock wall|cpu] [--name train_step]
"""

from __future__ import annotations

import argparse

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from torch import nn
from torch.nn import functional as F

import time

from pyro import poutine
from torch.distributions import kl_divergence

from common import alternate, git_commit, median, write_result
from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.inference.objectives import make_objective
from pyro_vae.inference.train import make_adam

LATENT = 50


class PlainMLPVAE(nn.Module):
    """784-400-50 encoder and 50-400-784 decoder, as a PyTorch user writes it."""

    def __init__(self, hidden=400):
        super().__init__()
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU())
        self.loc, self.raw_scale = nn.Linear(hidden, LATENT), nn.Linear(hidden, LATENT)
        self.dec = nn.Sequential(nn.Linear(LATENT, hidden), nn.ReLU(), nn.Linear(hidden, 784))

    def encode(self, x):
        h = self.enc(x)
        return self.loc(h), F.softplus(self.raw_scale(h)) + 1e-3

    def decode(self, z):
        return self.dec(z).view(-1, 1, 28, 28)


class PlainConvVAE(PlainMLPVAE):
    """Two stride-2 convolutions (32, 64 channels) and their transposes."""

    def __init__(self, hidden=400):
        super().__init__(hidden)
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(64 * 7 * 7, hidden), nn.ReLU())
        self.dec = nn.Sequential(nn.Linear(LATENT, hidden), nn.ReLU(), nn.Linear(hidden, 64 * 7 * 7), nn.ReLU(),
                                 nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(32, 1, 4, 2, 1))

    def decode(self, z):
        return self.dec(z)


def plain_loss(vae, x, analytic_kl):
    """Minus the one-sample ELBO summed over the batch, written out by hand."""
    loc, scale = vae.encode(x)
    eps = torch.randn_like(loc)
    z = loc + scale * eps
    log_px = -F.binary_cross_entropy_with_logits(vae.decode(z), x, reduction="none").sum((1, 2, 3))
    if analytic_kl:
        kl = 0.5 * (scale ** 2 + loc ** 2 - 1 - 2 * torch.log(scale)).sum(-1)
    else:  # log q(z|x) - log p(z) at the draw
        kl = (-0.5 * eps ** 2 - torch.log(scale) + 0.5 * z ** 2).sum(-1)
    return -(log_px - kl).sum()


def traced_loss(model, guide, x, analytic_kl):
    """pyro-vae's fast ELBO as it was before issue #16's second pass: the sites read from
    ``poutine.trace`` of the guide and of the model replayed on it, every term multiplied
    by its site's scale."""
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    recon, kl = 0.0, 0.0
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or type(site["fn"]).__name__ == "_Subsample":
            continue
        if site["is_observed"]:
            recon = recon + site["scale"] * site["fn"].log_prob(site["value"])
            continue
        q = guide_trace.nodes[name]
        if analytic_kl:
            kl = kl + q["scale"] * kl_divergence(q["fn"], site["fn"])
        else:
            kl = kl + q["scale"] * q["fn"].log_prob(q["value"]) - site["scale"] * site["fn"].log_prob(site["value"])
    return -(recon - kl).sum()


def step_candidates(network: str, batch: int, analytic_kl: bool) -> dict:
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((batch, 1, 28, 28), 0.3))
    config = ModelConfig(network=network, latent_dim=LATENT, hidden_dims=[400], conv_channels=[32, 64])
    name = "analytic-kl" if analytic_kl else "elbo"

    def ours(implementation):
        model, guide = build_vae(config, (1, 28, 28))
        # "traced" times traced_loss below; its objective object is not used
        objective = make_objective(name, implementation="fast" if implementation == "traced" else implementation)
        optimizer = make_adam([*model.parameters(), *guide.parameters()], 1e-3)

        def step():
            optimizer.zero_grad(set_to_none=True)
            if implementation == "traced":
                traced_loss(model, guide, x, analytic_kl).backward()
            else:
                objective.differentiable_loss(model, guide, x).backward()
            optimizer.step()
        return step

    def plain(fused):
        vae = (PlainMLPVAE if network == "mlp" else PlainConvVAE)()
        optimizer = torch.optim.Adam(vae.parameters(), 1e-3, fused=True if fused else None)

        def step():
            optimizer.zero_grad(set_to_none=True)
            plain_loss(vae, x, analytic_kl).backward()
            optimizer.step()
        return step

    def classic_svi():
        pyro.clear_param_store()
        model, guide = build_vae(config, (1, 28, 28))
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), TraceMeanField_ELBO() if analytic_kl else Trace_ELBO())
        return lambda: svi.step(x)

    return {"pyro_vae": ours("fast"), "pyro_vae_traced": ours("traced"), "pyro_vae_pyro_elbo": ours("pyro"),
            "pyro_svi": classic_svi(),
            "pytorch": plain(False), "pytorch_fused_adam": plain(True)}


def step_counts(network: str = "mlp", batch: int = 128) -> dict:
    """Per step, counts that do not depend on the machine's load: aten ops (all, ``copy_``,
    ``_to_copy``) from torch.profiler, and Python function calls (C calls included)."""
    import collections
    import sys

    from torch.profiler import ProfilerActivity, profile

    candidates = step_candidates(network, batch, False)
    counts = {}
    for name in ("pyro_vae", "pyro_vae_traced", "pyro_vae_pyro_elbo", "pytorch_fused_adam"):
        fn = candidates[name]
        for _ in range(3):
            fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        ops = collections.Counter(e.name for e in prof.events() if e.name.startswith("aten::"))
        calls = [0]

        def tracer(frame, event, arg):
            if event in ("call", "c_call"):
                calls[0] += 1
        sys.setprofile(tracer)
        fn()
        sys.setprofile(None)
        counts[name] = {"aten_ops": sum(ops.values()), "copy_": ops["aten::copy_"], "_to_copy": ops["aten::_to_copy"],
                        "python_calls": calls[0]}
    return counts


def epoch_candidates() -> tuple[dict, int]:
    """One epoch of the `make demo` model (784-512-256-20, batch 128, dynamic binarization)."""
    from pyro_vae.data.datasets import binarize_batch, load_dataset
    from pyro_vae.inference.train import Trainer, TrainSettings

    data = load_dataset("fashion-mnist", binarize="dynamic")
    config = ModelConfig(latent_dim=20, hidden_dims=[512, 256])
    model, guide = build_vae(config, data.image_shape)
    trainer = Trainer(model, guide, make_objective("analytic-kl"), data, TrainSettings(epochs=1, batch_size=128),
                      progress=False, log=lambda s: None)

    class PlainDemo(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU())
            self.loc, self.raw_scale = nn.Linear(256, 20), nn.Linear(256, 20)
            self.dec = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 784))

        encode = PlainMLPVAE.encode
        decode = PlainMLPVAE.decode

    plain = PlainDemo()
    optimizer = torch.optim.Adam(plain.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)

    def plain_epoch():
        images = data.train.images
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), 128):
            x = binarize_batch(images[order[start:start + 128]], generator)
            optimizer.zero_grad(set_to_none=True)
            plain_loss(plain, x, True).backward()
            optimizer.step()

    return {"pyro_vae": trainer.train_epoch, "pytorch": plain_epoch}, len(data.train)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--no-epoch", action="store_true")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--name", default="train_step", help="result file name under benchmarks/results/")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as pyro-vae's training does; applies to both candidates
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    rows = []
    for network in ("mlp", "conv"):
        for batch in (128, 512):
            for analytic_kl in (False, True):
                repeats = args.repeats if network == "mlp" else max(5, args.repeats // 4)
                times = alternate(step_candidates(network, batch, analytic_kl), repeats=repeats, warmup=3, clock=clock)
                med = {name: median(t) for name, t in times.items()}
                row = {"network": network, "batch": batch, "kl": "analytic" if analytic_kl else "monte-carlo",
                       "repeats": repeats, "median_ms": {k: 1000 * v for k, v in med.items()},
                       "ratio_vs_pytorch": med["pyro_vae"] / med["pytorch"],
                       "ratio_vs_pytorch_fused_adam": med["pyro_vae"] / med["pytorch_fused_adam"],
                       "pyro_svi_ratio_vs_pytorch": med["pyro_svi"] / med["pytorch"],
                       "traced_ratio_vs_pytorch_fused_adam": med["pyro_vae_traced"] / med["pytorch_fused_adam"]}
                rows.append(row)
                print(f"{network:4s} batch {batch:3d} {row['kl']:11s}: " + ", ".join(
                    f"{k} {1000 * v:.2f} ms" for k, v in med.items())
                    + f" | pyro-vae/pytorch {row['ratio_vs_pytorch']:.3f}, /pytorch+fused {row['ratio_vs_pytorch_fused_adam']:.3f}")
    counts = step_counts()
    print("per step (mlp, batch 128):", counts)
    epoch = None
    if not args.no_epoch:
        candidates, n = epoch_candidates()
        times = alternate(candidates, repeats=3, warmup=1)
        epoch = {"examples": n, "median_s": {k: median(v) for k, v in times.items()},
                 "ratio": median(times["pyro_vae"]) / median(times["pytorch"])}
        print(f"Fashion-MNIST epoch: pyro-vae {epoch['median_s']['pyro_vae']:.2f} s, plain PyTorch "
              f"{epoch['median_s']['pytorch']:.2f} s, ratio {epoch['ratio']:.3f}")
    print(write_result(args.name, {"commit": git_commit(), "clock": args.clock, "rows": rows, "epoch": epoch,
                                      "counts_mlp_128": counts, "load_average": __import__("os").getloadavg()}))


if __name__ == "__main__":
    main()
