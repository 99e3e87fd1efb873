"""Numerical guards at the values where they matter, not at initialisation: the encoder's
scale floor and overflow clamp, the learned Gaussian scale's floor, and the sum of
gradients across data-parallel ranks (simulated in threads with an exact all-reduce)."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from torch import nn

from pyro_vae import nn as vae_nn
from pyro_vae.inference import distributed
from pyro_vae.inference.distributed import DistributedContext
from pyro_vae.likelihoods import make_likelihood


def _encoder(transform: str, min_scale: float, raw: float, latent: int = 3) -> vae_nn.Encoder:
    """An encoder whose scale head outputs ``raw`` for every input (zero weights, bias raw)."""
    encoder = vae_nn.Encoder(nn.Flatten(), 4, latent, scale_transform=transform, min_scale=min_scale)
    with torch.no_grad():
        encoder.raw_scale.weight.zero_(), encoder.raw_scale.bias.fill_(raw)
    return encoder


@pytest.mark.parametrize("transform", ["softplus", "exp"])
@pytest.mark.parametrize("min_scale", [1e-3, 0.05])
def test_the_scale_stays_at_min_scale_when_the_raw_output_is_driven_to_minus_100(transform, min_scale):
    x = torch.rand(5, 1, 2, 2)
    loc, scale = _encoder(transform, min_scale, -100.0)(x)
    assert loc.shape == scale.shape == (5, 3)
    # softplus(-100) = 4e-44 and exp(-50) = 2e-22: the floor is all that is left.
    assert torch.allclose(scale, torch.full_like(scale, min_scale), rtol=1e-6, atol=0)
    # q(z | x) stays a proper density with a finite log-density.
    assert torch.isfinite(torch.distributions.Normal(loc, scale).log_prob(loc)).all()


@pytest.mark.parametrize("raw", [-2.0, 0.0, 3.0])
def test_the_scale_is_the_transform_of_the_raw_output_plus_the_floor(raw):
    x = torch.rand(2, 1, 2, 2)
    softplus = math.log1p(math.exp(raw))
    assert torch.allclose(_encoder("softplus", 0.01, raw)(x)[1], torch.tensor(softplus + 0.01))
    # exp: the raw output is a log-variance, so the scale is exp(raw / 2).
    assert torch.allclose(_encoder("exp", 0.01, raw)(x)[1], torch.tensor(math.exp(raw / 2) + 0.01))


def test_a_huge_log_variance_is_clamped_at_30_not_overflowed():
    _, scale = _encoder("exp", 1e-3, 1e4)(torch.rand(2, 1, 2, 2))
    assert torch.allclose(scale, torch.tensor(math.exp(15.0) + 1e-3))


def test_the_encoder_reads_the_location_from_its_own_head():
    encoder = _encoder("softplus", 1e-3, 0.0)
    with torch.no_grad():
        encoder.loc.weight.copy_(torch.eye(3, 4)), encoder.loc.bias.fill_(0.5)
    x = torch.arange(8.0).reshape(2, 1, 2, 2)
    loc, _ = encoder(x)
    assert torch.equal(loc, x.reshape(2, 4)[:, :3] + 0.5)


@pytest.mark.parametrize("name", ["gaussian-learned", "gaussian-learned-per-channel", "gaussian-learned-per-pixel"])
def test_a_learned_gaussian_scale_stays_at_its_floor_when_driven_down(name):
    likelihood = make_likelihood(name, (3, 2, 2), scale=0.5)
    assert torch.allclose(likelihood.scale(), torch.tensor(0.5))  # starts at the asked scale
    with torch.no_grad():
        likelihood.raw_scale.fill_(-100.0)
    assert torch.allclose(likelihood.scale(), torch.tensor(1e-3), rtol=1e-6, atol=0)
    output = torch.zeros(3, 2, 2)
    assert torch.isfinite(likelihood.distribution(output).log_prob(output))


# -- gradients across ranks ------------------------------------------------------------

class _ThreadWorld:
    """``torch.distributed``'s collectives for ranks that are threads of this process:
    each call waits for every rank, then all see the exact element-wise sum."""

    def __init__(self, world_size: int):
        self.barrier = threading.Barrier(world_size)
        self.inbox: dict[int, torch.Tensor] = {}
        self.rank = threading.local()

    def all_reduce(self, tensor, op=None):
        assert op == torch.distributed.ReduceOp.SUM, op
        self.inbox[self.rank.value] = tensor.clone()
        self.barrier.wait()
        total = sum(self.inbox[r] for r in sorted(self.inbox))
        self.barrier.wait()
        tensor.copy_(total)

    def run(self, fn, world_size: int) -> list:
        results, errors = [None] * world_size, []

        def target(rank):
            self.rank.value = rank
            try:
                results[rank] = fn(rank)
            except BaseException as err:  # re-raised in the test's thread
                errors.append(err)
                self.barrier.abort()

        threads = [threading.Thread(target=target, args=(r,)) for r in range(world_size)]
        [t.start() for t in threads], [t.join() for t in threads]
        if errors:
            raise errors[0]
        return results


@pytest.mark.parametrize("world_size", [2, 3])
def test_sum_gradients_leaves_every_rank_with_the_sum_of_all_ranks_gradients(monkeypatch, world_size):
    world = _ThreadWorld(world_size)
    monkeypatch.setattr(distributed.dist, "all_reduce", world.all_reduce)
    shapes = [(2, 3), (4,), (1,)]

    def grads_of(rank):  # distinct, non-uniform gradients per rank (a scale mix-up shows)
        return [torch.arange(math.prod(s), dtype=torch.float32).reshape(s) * (rank + 1) + rank ** 2 for s in shapes]

    def rank_fn(rank):
        params = [torch.zeros(s, requires_grad=True) for s in shapes]
        for p, g in zip(params, grads_of(rank)):
            p.grad = g
        params[2].grad = None if rank == 0 else params[2].grad  # a parameter rank 0 did not use
        flags = DistributedContext(rank, world_size).sum_gradients(params, stop=rank == 1, bad=False)
        return [p.grad.clone() for p in params], flags

    results = world.run(rank_fn, world_size)
    want = [sum(grads_of(r)[i] for r in range(world_size)) - (0 if i < 2 else grads_of(0)[2])
            for i in range(len(shapes))]
    for grads, flags in results:
        assert flags == (True, False)  # rank 1 asked to stop: every rank hears it
        for got, expected in zip(grads, want):
            assert torch.equal(got, expected)


def test_a_bad_loss_on_one_rank_stops_every_rank(monkeypatch):
    world = _ThreadWorld(2)
    monkeypatch.setattr(distributed.dist, "all_reduce", world.all_reduce)

    def rank_fn(rank):
        p = torch.zeros(2, requires_grad=True)
        p.grad = torch.ones(2)
        return DistributedContext(rank, 2).sum_gradients([p], stop=False, bad=rank == 1)

    assert world.run(rank_fn, 2) == [(False, True), (False, True)]


def test_the_sum_of_a_number_across_ranks(monkeypatch):
    world = _ThreadWorld(3)
    monkeypatch.setattr(distributed.dist, "all_reduce", world.all_reduce)
    got = world.run(lambda rank: DistributedContext(rank, 3).sum(1.5 * rank + 0.25, "cpu"), 3)
    assert got == [4.5 + 0.75] * 3


@pytest.mark.parametrize("world_size,n", [(2, 6), (2, 7), (3, 16)])
def test_shards_of_a_global_batch_are_disjoint_cover_it_and_differ_in_size_by_at_most_one(world_size, n):
    rows = torch.randperm(n)
    shards = [DistributedContext(rank, world_size).shard(rows) for rank in range(world_size)]
    assert torch.equal(torch.cat(shards), rows)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert torch.equal(DistributedContext().shard(rows), rows)
    one = DistributedContext()
    assert (one.is_main, one.active) == (True, False) and not DistributedContext(1, 2).is_main


def test_torchruns_environment_joins_a_gloo_group_on_cpu_and_nccl_per_local_gpu(monkeypatch):
    """``init_from_environment`` reads WORLD_SIZE / LOCAL_RANK as torchrun sets them (the
    process-group calls are recorded, not made)."""
    calls = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: calls.append(backend))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 3)
    monkeypatch.setattr(distributed.torch.cuda, "set_device", lambda device: calls.append(device))
    # a machine with a GPU for each of the three local ranks (none is here; the CUDA calls are recorded)
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(distributed.torch.cuda, "device_count", lambda: 3)
    for name in ("WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.init_from_environment("cpu") == (DistributedContext(), "cpu")  # no torchrun
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.init_from_environment("cuda") == (DistributedContext(), "cuda") and calls == []

    monkeypatch.setenv("WORLD_SIZE", "3")
    assert distributed.init_from_environment("cpu") == (DistributedContext(1, 3), "cpu")
    assert calls == ["gloo"]
    calls.clear()
    assert distributed.init_from_environment("cuda") == (DistributedContext(1, 3), "cuda:0")
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert distributed.init_from_environment("cuda") == (DistributedContext(1, 3), "cuda:2")
    assert calls == ["cuda:0", "nccl", "cuda:2", "nccl"]
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)  # joined already: not again
    calls.clear()
    distributed.init_from_environment("cpu")
    assert calls == []


def test_gather_and_broadcast_across_thread_ranks(monkeypatch):
    world = _ThreadWorld(2)
    boxes = {}

    def all_gather_object(out, obj):
        boxes[world.rank.value] = obj
        world.barrier.wait()
        out[:] = [boxes[r] for r in range(len(out))]
        world.barrier.wait()

    def broadcast(tensor, src):
        if world.rank.value == src:
            boxes["sent"] = tensor.clone()
        world.barrier.wait()
        tensor.copy_(boxes["sent"])
        world.barrier.wait()

    monkeypatch.setattr(distributed.dist, "all_gather_object", all_gather_object)
    monkeypatch.setattr(distributed.dist, "broadcast", broadcast)

    def rank_fn(rank):
        ctx = DistributedContext(rank, 2)
        params = [torch.full((2,), float(rank + 1)), torch.full((1,), float(10 * rank))]
        ctx.broadcast_parameters(params)
        return ctx.gather({"rank": rank}), [p.tolist() for p in params]

    for gathered, params in world.run(rank_fn, 2):
        assert gathered == [{"rank": 0}, {"rank": 1}]
        assert params == [[1.0, 1.0], [0.0]]  # rank 0's values everywhere
    assert DistributedContext().gather(5) == [5]
    params = [torch.ones(2)]
    DistributedContext().broadcast_parameters(params)  # one process: nothing to do
    assert DistributedContext().sum(2.5, "cpu") == 2.5


def test_stop_and_bad_flags_are_read_from_the_flags_not_the_gradients(monkeypatch):
    world = _ThreadWorld(2)
    monkeypatch.setattr(distributed.dist, "all_reduce", world.all_reduce)

    def rank_fn(rank):
        p = torch.zeros(5, requires_grad=True)
        p.grad = torch.full((5,), 3.0)  # positive gradients where a misplaced index would look
        return DistributedContext(rank, 2).sum_gradients([p], stop=False, bad=False)

    assert world.run(rank_fn, 2) == [(False, False), (False, False)]


def test_the_sum_across_ranks_keeps_double_precision_and_two_processes_are_a_group(monkeypatch):
    world = _ThreadWorld(2)
    monkeypatch.setattr(distributed.dist, "all_reduce", world.all_reduce)
    got = world.run(lambda rank: DistributedContext(rank, 2).sum(1e8 + 0.125 * (rank + 1), "cpu"), 2)
    assert got == [2e8 + 0.375] * 2  # float32 would round this to 200000000.0
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: None)
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 0)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.init_from_environment("cpu") == (DistributedContext(0, 2), "cpu")


def test_shutdown_without_a_process_group_does_nothing():
    assert not torch.distributed.is_initialized()
    distributed.shutdown()
