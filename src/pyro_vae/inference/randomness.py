"""Seeded work that leaves its caller's random streams where they were."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


@contextlib.contextmanager
def random_state_kept():
    """Restore the random states of Python's ``random``, NumPy and torch, on the CPU and on
    every CUDA device, on leaving the block, whatever happened inside.

    ``torch.manual_seed`` (and ``pyro.set_rng_seed``) seed every CUDA device as well as the
    CPU, so forking the CPU's state alone (``fork_rng(devices=[])``) left a caller's GPU
    stream reseeded: a library call that seeds and draws must fork them all."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
