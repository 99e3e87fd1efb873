"""Throughput of the importance-sampling estimator of log p(x) (examples x K per second)
against an independent hand-written vectorized PyTorch estimator of the same networks
(its own chunking: as many examples' K draws as fit 16,384 rows, K split only beyond that),
at several K and numbers of examples N; CPU time of the thread (``time.thread_time``, which
counts the kernel's time for page faults too) and the page faults of each call.

    python benchmarks/estimator.py [--k 100 1000 5000] [--examples 10 100] [--repeats 3]
                                   [--allocator cli|default]

``--allocator cli`` (the default) fixes glibc's thresholds as ``pyro-vae evaluate`` does
(:func:`pyro_vae.memory.fix_mmap_threshold`) for the whole process, so for both candidates;
``default`` leaves glibc's dynamic thresholds, as a library user gets them.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time

import torch
from torch.nn import functional as F

from common import alternate, git_commit, median, write_result
from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.inference.loglik import importance_log_likelihood


@torch.no_grad()
def handwritten_log_likelihood(model, guide, x, k, rows=16_384):
    """log p(x) per example for the Bernoulli VAE, written out by hand: no Pyro. Each pass
    decodes at most ``rows`` codes: ``rows // K`` examples with all their draws, or one
    example's draws ``rows`` at a time when K is larger."""
    batch_size = max(1, rows // k)
    k_chunk = min(k, rows)
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        loc, scale = guide.encoder(xb)
        lse = None
        for k0 in range(0, k, k_chunk):
            kc = min(k_chunk, k - k0)
            eps = torch.randn(kc, *loc.shape)
            z = loc + scale * eps
            logits = model.decoder(z)
            log_px = -F.binary_cross_entropy_with_logits(logits, xb.expand_as(logits), reduction="none").sum((-3, -2, -1))
            log_pz = (-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_qz = (-0.5 * eps ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)
            chunk = torch.logsumexp(log_px + log_pz - log_qz, 0)
            lse = chunk if lse is None else torch.logaddexp(lse, chunk)
        out.append(lse - math.log(k))
    return torch.cat(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--k", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--examples", type=int, nargs="+", default=[10, 100], help="test images for the MLP")
    parser.add_argument("--conv-examples", type=int, default=20, help="test images for the (slower) conv model, "
                        "at K = 1000 only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--allocator", choices=["cli", "default"], default="cli")
    parser.add_argument("--name", default="estimator", help="result file name under benchmarks/results/")
    args = parser.parse_args()
    if args.allocator == "cli":
        from pyro_vae.memory import fix_mmap_threshold

        fix_mmap_threshold()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as pyro-vae's evaluation does; applies to both candidates
    torch.manual_seed(0)
    rows = []
    cases = [("mlp", k, n) for k in args.k for n in args.examples] + [("conv", 1000, args.conv_examples)]
    for network, k, examples in cases:
        torch.manual_seed(0)
        model, guide = build_vae(ModelConfig(network=network, latent_dim=50, hidden_dims=[400]), (1, 28, 28))
        model.eval(), guide.eval()
        x = torch.bernoulli(torch.full((examples, 1, 28, 28), 0.13))
        # Same numbers from both for the same draws (a correctness check before timing).
        torch.manual_seed(1)
        ours = importance_log_likelihood(model, guide, x[:20], k=64).log_likelihood
        torch.manual_seed(1)
        theirs = handwritten_log_likelihood(model, guide, x[:20], k=64)
        faults = {"pyro_vae": [], "handwritten": []}

        def counted(name, fn):
            def call():
                before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
                fn()
                faults[name].append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
            return call

        times = alternate({
            "pyro_vae": counted("pyro_vae", lambda: importance_log_likelihood(model, guide, x, k=k)),
            "handwritten": counted("handwritten", lambda: handwritten_log_likelihood(model, guide, x, k)),
        }, repeats=args.repeats, warmup=1, clock=time.thread_time)
        work = examples * k
        row = {"network": network, "k": k, "examples": examples,
               "pyro_vae_samples_per_s": work / median(times["pyro_vae"]),
               "handwritten_samples_per_s": work / median(times["handwritten"]),
               "max_abs_difference_same_draws": (ours - theirs).abs().max().item(),
               "seconds": times, "page_faults_per_call": {name: median(v[1:]) for name, v in faults.items()}}
        row["ratio"] = row["pyro_vae_samples_per_s"] / row["handwritten_samples_per_s"]
        rows.append(row)
        print(f"{network} K={k} N={examples}: pyro-vae {row['pyro_vae_samples_per_s']:,.0f} /s, hand-written "
              f"{row['handwritten_samples_per_s']:,.0f} /s, ratio {row['ratio']:.3f} "
              f"(same draws differ by {row['max_abs_difference_same_draws']:.2e} nats; page faults a call "
              f"{row['page_faults_per_call']['pyro_vae']:,.0f} vs {row['page_faults_per_call']['handwritten']:,.0f})",
              flush=True)
    print(write_result(args.name, {"commit": git_commit(), "unit": "examples x K per second", "rows": rows,
                                   "allocator": args.allocator, "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
