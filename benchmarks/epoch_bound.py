"""A binarized-MNIST training epoch against its arithmetic lower bound.

The bound is what one core must do per step whatever the framework, each piece timed
alone on this machine at the step's own shapes: the GEMMs of the 784-400-50 MLP VAE
(forward, and backward to the inputs and the weights; GFLOP/s reported), the elementwise
passes (both ReLUs, the Bernoulli log-probability, the Gaussian head and its KL, forward and
backward; the bias gradients; the noise draw and z = loc + scale * noise), a batch of bytes
made floats, and the fused Adam update. An epoch's bound is that times the number of steps,
with each piece at its best of 30 runs (the core's best speed; before issue #16's sixth pass
the only bound, without the bias gradients, the second ReLU, the noise and the data) and at
its median (what the same load typically leaves it: the epochs are timed whole, every step
and its slow moments counted, so this is the like-for-like bound on a shared machine). Measured against it, alternated with re-measures
of the bound: pyro-vae's ``Trainer.train_epoch`` (``--objective elbo``, the CLI default) and
a hand-written fused-Adam PyTorch epoch over the same bytes. Every time is the thread's CPU
time (``time.thread_time``), which an oversubscribed machine inflates far less than wall time.

    python benchmarks/epoch_bound.py [--data-dir DIR] [--batch 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.nn import functional as F

from common import git_commit, median, write_result
from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.data.datasets import load_dataset
from pyro_vae.inference.objectives import make_objective
from pyro_vae.inference.train import Trainer, TrainSettings
from train_step import PlainMLPVAE, plain_loss

#: (fan_in, fan_out) of the linear layers: encoder, the two heads, decoder.
LAYERS = [(784, 400), (400, 50), (400, 50), (50, 400), (400, 784)]


def timed(fn, repeats=30) -> tuple[float, float]:
    """Best and median thread CPU seconds of ``fn`` over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return min(times), median(times)


def step_bound(batch: int) -> dict:
    """Seconds per step of the GEMMs, the elementwise passes, the batch's bytes made floats,
    the noise draw and Adam, each timed alone: at its best (``*_s``; the core's best speed) and
    at its median (``*_median_s``; what the same load leaves it typically, as the epochs, timed
    whole, see it)."""
    pieces = {"gemm": [], "elementwise": [], "data": [], "adam": []}
    flops = 0
    for i, (fan_in, fan_out) in enumerate(LAYERS):
        x, w, b = torch.randn(batch, fan_in), torch.randn(fan_out, fan_in), torch.randn(fan_out)
        g = torch.randn(batch, fan_out)
        pieces["gemm"].append(timed(lambda: torch.addmm(b, x, w.t())))  # forward
        pieces["gemm"].append(timed(lambda: g.t() @ x))  # gradient of the weights
        pieces["elementwise"].append(timed(lambda: g.sum(0)))  # gradient of the bias
        flops += 2 * 2 * batch * fan_in * fan_out
        if i > 0:  # the first layer's input (the data) needs no gradient
            pieces["gemm"].append(timed(lambda: g @ w))
            flops += 2 * batch * fan_in * fan_out
    logits = torch.randn(batch, 784, requires_grad=True)
    data = torch.bernoulli(torch.full((batch, 784), 0.3))
    hiddens = [torch.randn(batch, 400, requires_grad=True) for _ in range(2)]
    head = torch.randn(batch, 50, requires_grad=True)

    def elementwise():
        loss = F.binary_cross_entropy_with_logits(logits, data, reduction="sum")
        for hidden in hiddens:  # the encoder's and the decoder's hidden layer
            loss = loss + F.relu(hidden).sum()
        scale = F.softplus(head) + 1e-3
        loss = loss + (0.5 * (scale ** 2 + head ** 2 - 1) - torch.log(scale)).sum()
        loss.backward()
    pieces["elementwise"].append(timed(elementwise))
    pieces["elementwise"].append(timed(lambda: head + head * torch.randn(batch, 50)))  # z = loc + scale * noise
    stored = torch.randint(0, 2, (10_000, 1, 28, 28), dtype=torch.uint8)
    pieces["data"].append(timed(lambda: stored[torch.randint(0, 10_000, (batch,))].float()))  # a batch from bytes
    params = [torch.nn.Parameter(torch.randn(o, i)) for i, o in LAYERS] + [torch.nn.Parameter(torch.randn(o)) for _, o in LAYERS]
    for p in params:
        p.grad = torch.randn_like(p)
    adam = torch.optim.Adam(params, 1e-3, fused=True)
    pieces["adam"].append(timed(adam.step))
    out = {}
    for name, times in pieces.items():
        out[f"{name}_s"] = sum(t[0] for t in times)
        out[f"{name}_median_s"] = sum(t[1] for t in times)
    out["gemm_gflops"] = flops / out["gemm_s"] / 1e9
    out["gemm_median_gflops"] = flops / out["gemm_median_s"] / 1e9
    out["step_s"] = sum(out[f"{name}_s"] for name in pieces)
    out["step_median_s"] = sum(out[f"{name}_median_s"] for name in pieces)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("PYRO_VAE_SHARED_DATA", ""))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    data = load_dataset("binarized-mnist", args.data_dir)
    n = len(data.train)
    steps = -(-n // args.batch)
    model, guide = build_vae(ModelConfig(latent_dim=50, hidden_dims=[400]), data.image_shape)
    trainer = Trainer(model, guide, make_objective("elbo"), data, TrainSettings(epochs=1, batch_size=args.batch),
                      progress=False, log=lambda s: None)
    plain = PlainMLPVAE()
    optimizer = torch.optim.Adam(plain.parameters(), 1e-3, fused=True)
    images = data.train.images

    def plain_epoch():
        order = torch.randperm(n)
        for start in range(0, n, args.batch):
            x = images[order[start:start + args.batch]]
            optimizer.zero_grad(set_to_none=True)
            plain_loss(plain, x, False).backward()
            optimizer.step()

    rows = []
    for _ in range(args.repeats):
        bound = step_bound(args.batch)
        row = {"bound": bound, "bound_epoch_s": bound["step_s"] * steps,
               "bound_median_epoch_s": bound["step_median_s"] * steps}
        for name, fn in (("pyro_vae", trainer.train_epoch), ("pytorch_fused_adam", plain_epoch)):
            start = time.thread_time()
            fn()
            row[f"{name}_s"] = time.thread_time() - start
            row[f"{name}_over_bound"] = row[f"{name}_s"] / row["bound_epoch_s"]
            row[f"{name}_over_median_bound"] = row[f"{name}_s"] / row["bound_median_epoch_s"]
        rows.append(row)
        print(f"bound {row['bound_epoch_s']:.2f} s/epoch at best, {row['bound_median_epoch_s']:.2f} at the median "
              f"(GEMM {bound['gemm_gflops']:.0f} / {bound['gemm_median_gflops']:.0f} GFLOP/s; a step "
              f"{1e3 * bound['gemm_s']:.2f} + {1e3 * bound['elementwise_s']:.2f} + {1e3 * bound['data_s']:.2f} + "
              f"{1e3 * bound['adam_s']:.2f} ms at best); pyro-vae {row['pyro_vae_s']:.2f} s "
              f"({row['pyro_vae_over_bound']:.2f}x, {row['pyro_vae_over_median_bound']:.2f}x), PyTorch + fused Adam "
              f"{row['pytorch_fused_adam_s']:.2f} s ({row['pytorch_fused_adam_over_bound']:.2f}x, "
              f"{row['pytorch_fused_adam_over_median_bound']:.2f}x)", flush=True)
    result = {"commit": git_commit(), "examples": n, "batch": args.batch, "steps": steps, "rows": rows,
              "pyro_vae_over_bound": median([r["pyro_vae_over_bound"] for r in rows]),
              "pytorch_fused_adam_over_bound": median([r["pytorch_fused_adam_over_bound"] for r in rows]),
              "pyro_vae_over_median_bound": median([r["pyro_vae_over_median_bound"] for r in rows]),
              "pytorch_fused_adam_over_median_bound": median([r["pytorch_fused_adam_over_median_bound"] for r in rows]),
              "load_average": os.getloadavg()}
    print(write_result("epoch_bound", result))


if __name__ == "__main__":
    main()
