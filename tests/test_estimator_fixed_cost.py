"""The estimator's per-call savings (issue #16, seventh pass) change no number: the Bernoulli
support check answers as the comparisons do, the Bernoulli log-density of values broadcast to
K samples' logits is the kernel's bit for bit, log q at an expanded guide's draw is the same
formula bit for bit, and ``FullPlate`` broadcasts without Pyro's JIT-warning wrapper."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.poutine.broadcast_messenger import BroadcastMessenger
from torch.nn import functional as F

from pyro_vae.distributions import _BROADCAST, DrawNoiseNormal, Event, FullPlate
from pyro_vae.errors import DataError
from pyro_vae.likelihoods import _all_zero_or_one, make_likelihood

SHAPE = (1, 2, 3)
ODD_VALUES = [0.5, -0.0, 2.0, -1.0, 1e-30, 1e-7, 1 - 2 ** -24, 1 + 2 ** -23, 1e30, -1e30,
              float("nan"), float("inf"), -float("inf")]


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_zero_or_one_check_answers_as_the_comparisons_do(dtype):
    x = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]], dtype=dtype)
    assert _all_zero_or_one(x) and _all_zero_or_one(x[:0])  # an empty tensor passes, as .all() says
    for value in ODD_VALUES:
        y = x.clone()
        y[1, 1] = value
        expected = bool(((y == 0) | (y == 1)).all())
        assert _all_zero_or_one(y) is expected, value
        assert expected == (y[1, 1].item() in (0.0, 1.0))  # -0.0 (and in float16 1e-30, 1 - 2^-24) pass; no other
    for other in (torch.uint8, torch.int64, torch.bool):  # the comparisons themselves
        assert _all_zero_or_one(x.to(other))
    assert not _all_zero_or_one(torch.tensor([0, 255, 2], dtype=torch.uint8))


def test_bernoulli_support_check_keeps_its_messages_and_their_order():
    lik = make_likelihood("bernoulli", SHAPE)
    lik.check_support(torch.ones(2, *SHAPE))
    bad = torch.zeros(2, *SHAPE)
    bad[1, 0, 1, 2] = float("nan")
    bad[0, 0, 0, 0] = 0.5
    with pytest.raises(DataError, match="contains NaN or infinite values"):  # checked first, as before
        lik.check_support(bad)
    bad[1, 0, 1, 2] = 1.0
    with pytest.raises(DataError, match="grey-level pixels"):
        lik.check_support(bad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bernoulli_log_prob_of_values_broadcast_to_k_samples_is_the_kernels_bit_for_bit(dtype, monkeypatch):
    torch.manual_seed(0)
    logits = torch.randn(5, 4, *SHAPE, dtype=dtype) * 8
    logits[0, 0, 0, 0] = torch.tensor([100.0, -100.0, 0.0], dtype=dtype)
    x = torch.bernoulli(torch.full((4, *SHAPE), 0.4, dtype=dtype))
    kernel = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum((-3, -2, -1))
    lik = make_likelihood("bernoulli", SHAPE)
    calls = []
    real = F.binary_cross_entropy_with_logits
    monkeypatch.setattr(F, "binary_cross_entropy_with_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        ours = lik.distribution(logits).log_prob(x)
    assert calls == [] and torch.equal(ours, kernel)  # 1 - x taken before broadcasting: no kernel call
    # With a gradient to the logits, the kernel (and its fused backward) as before.
    leaf = logits.clone().requires_grad_()
    lik.distribution(leaf).log_prob(x).sum().backward()
    assert calls == [1]
    reference = logits.clone().requires_grad_()
    (-real(reference, x.expand_as(reference), reduction="none").sum()).backward()
    assert torch.equal(leaf.grad, reference.grad)
    # Values wider than the logits are broadcast for the kernel, as before.
    with torch.no_grad():
        wide = lik.distribution(logits[0]).log_prob(x.expand(5, *x.shape))
    assert torch.equal(wide, -real(logits[0].expand(5, *x.shape), x.expand(5, *x.shape), reduction="none").sum((-3, -2, -1)))


def test_an_expanded_draw_noise_normal_reads_log_q_with_the_log_of_its_unexpanded_scales():
    torch.manual_seed(0)
    loc = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    scale = (torch.rand(4, 3, dtype=torch.float64) + 0.1).requires_grad_()
    expanded = DrawNoiseNormal(loc, scale, validate_args=False).expand((2, 4, 3))
    assert expanded._unexpanded_scale is scale and expanded.expand((5, 2, 4, 3))._unexpanded_scale is scale
    z = expanded.rsample()
    eps = expanded._draw[1]
    by_hand = ((eps * eps) * -0.5 - math.log(math.sqrt(2 * math.pi))) - scale.expand(2, 4, 3).log()
    log_q = expanded.log_prob(z)
    assert torch.equal(log_q, by_hand)  # the same values, with a gradient: the log of the [2, 4, 3] view
    assert _log_input_shapes(lambda: expanded.log_prob(z)) == [[2, 4, 3]]
    with torch.no_grad():  # the estimator's case: the log of the [4, 3] scales, broadcast
        assert torch.equal(expanded.log_prob(z), by_hand)
        assert _log_input_shapes(lambda: expanded.log_prob(z)) == [[4, 3]]
    # Normal's density and total gradients, to rounding.
    reference = dist.Normal(loc, scale).expand((2, 4, 3)).log_prob(z)
    assert torch.allclose(log_q, reference, rtol=1e-12)
    ours = torch.autograd.grad(log_q.sum(), (loc, scale), allow_unused=True)
    theirs = torch.autograd.grad(reference.sum(), (loc, scale))
    assert ours[0] is None and torch.allclose(theirs[0], torch.zeros_like(loc), atol=1e-12)  # d/dmu = 0
    assert torch.allclose(ours[1], theirs[1], rtol=1e-10) and torch.allclose(ours[1], -2 / scale)  # -1/s, twice


def _log_input_shapes(fn):
    with torch.profiler.profile(record_shapes=True) as profile:
        fn()
    return [event.input_shapes[0] for event in profile.events() if event.name == "aten::log"]


def test_full_plate_broadcasts_with_the_function_pyro_wraps_in_ignore_jit_warnings(monkeypatch):
    assert _BROADCAST is BroadcastMessenger._pyro_sample.__wrapped__
    monkeypatch.setattr(BroadcastMessenger, "_pyro_sample", staticmethod(lambda msg: pytest.fail("wrapper called")))
    with pyro.poutine.trace() as tracer, FullPlate("outer", 2, dim=-2), FullPlate("data", 3):
        pyro.sample("z", Event(dist.Normal(torch.zeros(3, 4), 1.0), 1))
    site = tracer.trace.nodes["z"]
    assert site["fn"].batch_shape == (2, 3) and site["value"].shape == (2, 3, 4)
    assert [f.name for f in site["cond_indep_stack"]] == ["outer", "data"]
