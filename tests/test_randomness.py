"""Seeded library work leaves its caller's random streams as they were, on every device."""

from __future__ import annotations

import contextlib
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pyro_vae.inference import randomness
from pyro_vae.inference.fidelity import prior_fidelity
from pyro_vae.inference.randomness import random_state_kept


def _draws():
    return torch.rand(2).tolist(), np.random.rand(2).tolist(), random.random()


def test_the_block_may_reseed_and_draw_and_even_fail_without_moving_the_callers_streams():
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    expected = _draws()
    for fails in (False, True):
        torch.manual_seed(7), np.random.seed(7), random.seed(7)
        with contextlib.suppress(RuntimeError), random_state_kept():
            torch.manual_seed(0), np.random.seed(0), random.seed(0)
            _draws()
            if fails:
                raise RuntimeError("inside the block")
        assert _draws() == expected


@pytest.fixture
def two_gpus(monkeypatch):
    """Two CUDA devices as the fork sees them, and the devices each fork was asked to keep."""
    forked = []

    @contextlib.contextmanager
    def recording_fork(devices=None, enabled=True):
        forked.append(list(devices))
        yield

    monkeypatch.setattr(randomness.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(randomness.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(randomness.torch.random, "fork_rng", recording_fork)
    return forked


def test_the_fork_keeps_every_cuda_devices_stream(two_gpus):
    # torch.manual_seed seeds every CUDA device: fork_rng(devices=[]) left the GPUs' streams reseeded
    with random_state_kept():
        pass
    assert two_gpus == [[0, 1]]


def test_prior_fidelity_keeps_the_gpus_streams_it_reseeds(two_gpus, monkeypatch):
    monkeypatch.setattr(torch, "manual_seed", lambda seed: None)  # no real GPU to seed here
    generator = SimpleNamespace(num_classes=3, sample_prior=lambda labels: torch.zeros(len(labels), 2),
                                decode=lambda codes, labels: torch.nn.functional.one_hot(labels, 3).float())
    result = prior_fidelity(generator, classify=lambda images: images.argmax(1), per_class=4)
    assert two_gpus == [[0, 1]]
    assert result.overall.value == 1.0  # the stand-in decoder draws each label's own class
