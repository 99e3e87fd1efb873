"""Data-parallel training across processes with ``torch.distributed``.

Launched by ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the
rendezvous address), every rank holds the whole model and the whole data set, takes a
disjoint slice of every global batch, and before each optimizer step the gradients are
summed across ranks. The loss is a sum over examples, so the summed gradient is exactly
the single-process gradient of the global batch (the per-example mean gradient averaged
over ranks, times the batch size). Rank 0 alone evaluates, writes checkpoints, metrics
and figures; every rank's RNG state is kept in the checkpoint so every rank can resume.
Backend: gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from pyro.poutine.messenger import Messenger

from pyro_vae.distributions import DRAWS_AS_NORMAL


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch's row indices (sizes differ by at most one)."""
        if not self.active:
            return rows
        return rows.tensor_split(self.world_size)[self.rank]

    def shard_rows(self, n: int) -> slice:
        """This rank's rows of a global batch of ``n``: the slice :meth:`shard` takes."""
        if not self.active:
            return slice(0, n)
        sizes = [len(part) for part in torch.arange(n).tensor_split(self.world_size)]
        start = sum(sizes[:self.rank])
        return slice(start, start + sizes[self.rank])

    def sum_gradients(self, parameters: list[torch.Tensor], stop: bool, bad: bool) -> tuple[bool, bool]:
        """Sum every parameter's gradient across ranks in one all-reduce; the same call
        carries each rank's stop request and non-finite-loss flag, so all ranks stop (or
        fail) at the same step. Returns (any rank asked to stop, any rank's loss was bad)."""
        if not self.active:
            return stop, bad
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flags = grads[0].new_tensor([float(stop), float(bad)])
        flat = torch.cat([g.reshape(-1) for g in grads] + [flags])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p, g in zip(parameters, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(g)
            offset += n
        return bool(flat[-2].item() > 0), bool(flat[-1].item() > 0)

    def sum(self, value: float, device) -> float:
        if not self.active:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.item()

    def gather(self, obj) -> list:
        """``obj`` from every rank, in rank order (on every rank)."""
        if not self.active:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_parameters(self, parameters: list[torch.Tensor]) -> None:
        """Start every rank from rank 0's parameters."""
        if self.active:
            for p in parameters:
                dist.broadcast(p.data, src=0)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def init_from_environment(device: str) -> tuple[DistributedContext, str]:
    """Join the process group ``torchrun`` describes, if any. Returns the context and the
    device this rank should use (``cuda:LOCAL_RANK`` on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(), device
    cuda = device.startswith("cuda")
    if cuda:
        from pyro_vae.errors import ConfigError

        if device != "cuda":  # each rank takes the GPU of its local rank, not the one named
            raise ConfigError(f"--device {device} names one GPU, but under torchrun each process trains on the GPU of "
                              "its local rank (cuda:0 for the first); give --device cuda.")
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was asked for but CUDA is not available here; use --device cpu.")
        local_rank, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(f"torchrun started a process of local rank {local_rank} with --device cuda, but this "
                              f"machine has {count} CUDA device(s), one per process; give --nproc_per_node "
                              f"{count} or fewer.")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size()), device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _draws_as_normal(base) -> bool:
    """A Normal whose draws are ``Normal.rsample``'s (loc + eps * scale, eps ~ N(0, 1)): a
    ``Normal`` itself, or a subclass that says so (``DRAWS_AS_NORMAL``, as the guide's
    ``DrawNoiseNormal`` does); other subclasses may draw otherwise and are left to Pyro."""
    return isinstance(base, torch.distributions.Normal) and (
        type(base).__name__ == "Normal" or getattr(type(base), DRAWS_AS_NORMAL, False))


class GlobalBatchNoise(Messenger):
    r"""Draw the reparameterized noise of the guide's Normal latent sites for the whole global
    batch, on every rank alike, and keep this rank's rows: z = loc + scale * eps with eps
    ``[..., B_global, ..., L]`` from ``generator`` narrowed to ``rows`` along the dim of the
    plate named ``plate``. With the same generator state on every rank, every example's
    draw depends on its position in the global batch, not on how the batch is split, so N
    processes draw what one process draws. Sites of other families (flows, discrete y)
    are left to Pyro and draw from each rank's own torch RNG. Enter it around the whole
    objective (outside its particle plates, which must broadcast the site first); the
    model's sites are replayed from the guide or observed, so it leaves them alone.
    """

    #: It acts on sample statements only (``pyro_vae.pyro_modules.IGNORES_STORED_PARAMS``).
    ignores_stored_params = True

    def __init__(self, generator: torch.Generator, rows: slice, global_size: int, plate: str = "data"):
        super().__init__()
        self.generator, self.rows, self.global_size, self.plate = generator, rows, global_size, plate

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or msg["value"] is not None or msg["infer"].get("enumerate"):
            return
        base, event_dims = msg["fn"], 0
        while isinstance(base, torch.distributions.Independent):
            event_dims += base.reinterpreted_batch_ndims
            base = base.base_dist
        frame = next((f for f in msg["cond_indep_stack"] if f.name == self.plate), None)
        if not _draws_as_normal(base) or frame is None:
            return
        shape, dim = list(base.batch_shape), frame.dim - event_dims
        length = self.rows.stop - self.rows.start
        if -dim > len(shape) or shape[dim] != length:
            return
        shape[dim] = self.global_size
        eps = torch.randn(shape, generator=self.generator, device=base.loc.device, dtype=base.loc.dtype)
        eps = eps.narrow(dim, self.rows.start, length)
        draw_with = getattr(base, "draw_with", None)  # DrawNoiseNormal keeps the noise for its log q
        msg["value"] = draw_with(eps) if draw_with is not None else base.loc + base.scale * eps
