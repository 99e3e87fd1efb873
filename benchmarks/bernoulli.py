"""Bernoulli log-probability of 0/1 data, two forms, timed alternately in one process:

* ``softplus``: ``-softplus(l (1 - 2x))`` (what ``BinaryBernoulli.log_prob`` computes for
  large tensors);
* ``bce``: ``-binary_cross_entropy_with_logits(l, x, reduction="none")`` (torch's kernel).

At the training step's shapes ([128 or 512, 784]) and the estimator's chunk ([10,000, 784]),
forward only and forward + backward. Writes benchmarks/results/bernoulli.json.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from common import alternate, git_commit, median, write_result

torch.set_num_threads(1)


def forms(logits, x, backward: bool):
    def softplus():
        value = -F.softplus(logits * (1 - 2 * x))
        if backward:
            value.sum().backward()

    def bce():
        value = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        if backward:
            value.sum().backward()

    return {"softplus": softplus, "bce": bce}


def main():
    rows = []
    for n in (128, 512, 10_000):
        generator = torch.Generator().manual_seed(0)
        logits = (3 * torch.randn(n, 784, generator=generator)).requires_grad_()
        x = torch.bernoulli(torch.full((n, 784), 0.13), generator=generator)
        for backward in (False, True):
            repeats = 400 if n < 1000 else 40
            times = alternate(forms(logits, x, backward), repeats)
            ms = {name: 1e3 * median(t) for name, t in times.items()}
            rows.append({"rows": n, "backward": backward, "median_ms": ms,
                         "softplus_over_bce": ms["softplus"] / ms["bce"]})
            print(f"[{n}, 784] {'fwd+bwd' if backward else 'fwd'}: softplus {ms['softplus']:.3f} ms, "
                  f"bce {ms['bce']:.3f} ms, ratio {ms['softplus'] / ms['bce']:.3f}", flush=True)
    # Exactness against float64 on the same data.
    logits64 = logits.detach().double()
    exact = -F.softplus(logits64 * (1 - 2 * x.double()))
    errors = {"softplus": (-F.softplus(logits.detach() * (1 - 2 * x)) - exact).abs().max().item(),
              "bce": (-F.binary_cross_entropy_with_logits(logits.detach(), x, reduction="none") - exact)
              .abs().max().item()}
    print("largest error per pixel against float64:", errors)
    print(write_result("bernoulli", {"commit": git_commit(), "rows": rows, "max_abs_error_vs_float64": errors,
                                      "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
