"""The estimator's cost per call where the call is small: pyro-vae's ``importance_log_likelihood``
against the hand-written vectorized estimator of ``benchmarks/estimator.py`` at K=4 on 2 images
(almost all fixed cost) and at K=100 on 10 (the target's smallest case), 784-400-50 MLP, one
torch thread, CPU time of the thread, the two alternated in rounds of ``--calls`` calls.

    python benchmarks/estimator_fixed_cost.py [--repeats 15] [--calls 20] [--name estimator_fixed_cost]

To compare two commits, run it with ``PYTHONPATH`` at each one's ``src`` (``git archive COMMIT src |
tar -x -C DIR``): the hand-written estimator is the same in both, so its time is the yardstick.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from common import alternate, git_commit, median, write_result
from estimator import handwritten_log_likelihood
from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.inference.loglik import importance_log_likelihood
from pyro_vae.memory import fix_mmap_threshold


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20, help="calls a timed round (one clock reading each)")
    parser.add_argument("--name", default="estimator_fixed_cost")
    args = parser.parse_args()
    fix_mmap_threshold()  # as pyro-vae evaluate does (benchmarks/estimator.py's default)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    rows = []
    for k, n in ((4, 2), (100, 10)):
        torch.manual_seed(0)
        model, guide = build_vae(ModelConfig(network="mlp", latent_dim=50, hidden_dims=[400]), (1, 28, 28))
        model.eval(), guide.eval()
        x = torch.bernoulli(torch.full((n, 1, 28, 28), 0.13))

        def rounds(call):
            def timed():
                for _ in range(args.calls):
                    call()
            return timed

        times = alternate({"pyro_vae": rounds(lambda: importance_log_likelihood(model, guide, x, k=k)),
                           "handwritten": rounds(lambda: handwritten_log_likelihood(model, guide, x, k))},
                          repeats=args.repeats, warmup=1, clock=time.thread_time)
        ours, theirs = (median(times[name]) / args.calls * 1e3 for name in ("pyro_vae", "handwritten"))
        rows.append({"k": k, "examples": n, "pyro_vae_ms_per_call": ours, "handwritten_ms_per_call": theirs,
                     "throughput_ratio": theirs / ours})
        print(f"K={k} N={n}: pyro-vae {ours:.3f} ms a call, hand-written {theirs:.3f} ms, "
              f"throughput ratio {theirs / ours:.3f}", flush=True)
    import pyro_vae  # the code timed: this checkout's src, or another commit's through PYTHONPATH

    print(write_result(args.name, {"commit": git_commit(), "pyro_vae_source": os.path.dirname(pyro_vae.__file__),
                                   "unit": "ms of thread CPU time a call", "rows": rows,
                                   "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
