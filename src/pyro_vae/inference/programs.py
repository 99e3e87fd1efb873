"""Any Pyro program as the trainer sees it: something with parameters and a state dict.

A :class:`~pyro.nn.module.PyroModule` (the library's models and guides) already is one. A
function-style program, as Pyro's tutorials write them::

    def model(x):
        pyro.module("decoder", decoder)          # registers decoder's weights in the param store
        with pyro.plate("data", x.shape[0]):
            ...

keeps its parameters in Pyro's global param store; :func:`trainable_programs` runs the
guide once under a trace (and the model once, replayed on the guide's draws) to learn
which entries of the store each registers, and wraps each function in a
:class:`ParamStoreProgram` whose ``parameters()`` and ``state_dict()`` are those entries.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable

import pyro
import torch
from pyro import poutine


def _param_names(trace) -> list[str]:
    return [name for name, site in trace.nodes.items() if site["type"] == "param"]


class ParamStoreProgram:
    """A function-style Pyro program and the names of the param-store entries it registers.

    ``parameters()`` are the entries' unconstrained tensors (those Pyro's own optimizers
    step; for ``pyro.module`` they are the module's own ``nn.Parameter`` objects);
    ``state_dict()`` maps each name to a copy of its unconstrained value, and
    ``load_state_dict`` copies values back in place, so an optimizer that holds the tensors
    keeps holding them. ``train()`` and ``eval()`` do nothing: the program's torch modules
    are not visible from the param store, so dropout or batch-norm layers in them stay in
    the mode their owner set.
    """

    def __init__(self, fn: Callable, names: list[str]):
        self.fn = fn
        self.names = list(dict.fromkeys(names))
        self.needs_labels = getattr(fn, "needs_labels", False)

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def _store(self) -> dict[str, torch.Tensor]:
        return dict(pyro.get_param_store().named_parameters())

    def parameters(self) -> list[torch.Tensor]:
        store = self._store()
        return [store[name] for name in self.names]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: value.detach().clone() for name, value in zip(self.names, self.parameters())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy saved values into the param store; ``RuntimeError`` if names or shapes differ
        (as ``torch.nn.Module.load_state_dict`` raises)."""
        if set(state) != set(self.names):
            missing, unexpected = sorted(set(self.names) - set(state)), sorted(set(state) - set(self.names))
            raise RuntimeError(f"parameters differ: missing {missing}, unexpected {unexpected}")
        with torch.no_grad():
            for name, value in zip(self.names, self.parameters()):
                if value.shape != state[name].shape:
                    raise RuntimeError(f"size mismatch for {name}: {tuple(state[name].shape)} saved, "
                                       f"{tuple(value.shape)} here")
                value.copy_(state[name])

    def train(self, mode: bool = True) -> ParamStoreProgram:
        return self

    def eval(self) -> ParamStoreProgram:
        return self

    def to(self, device) -> ParamStoreProgram:
        return self


def trainable_programs(model: Callable, guide: Callable, *args, **kwargs) -> tuple:
    """``(model, guide)`` with ``parameters()`` and ``state_dict()``: modules as they are,
    function-style programs wrapped in :class:`ParamStoreProgram` after one traced run on
    ``args`` (a small batch). A parameter both register belongs to the guide alone, so the
    optimizer sees it once."""
    if isinstance(model, torch.nn.Module) and isinstance(guide, torch.nn.Module):
        return model, guide
    with torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    guide_names = _param_names(guide_trace)
    model_names = [name for name in _param_names(model_trace) if name not in guide_names]
    if not isinstance(guide, torch.nn.Module):
        guide = ParamStoreProgram(guide, guide_names)
    if not isinstance(model, torch.nn.Module):
        model = ParamStoreProgram(model, model_names)
    return model, guide


@contextlib.contextmanager
def evaluation_mode(*programs):
    """Within the block, every ``torch.nn.Module`` among ``programs`` in evaluation mode; after
    it, each of their submodules back in the mode it had (a held-out number or a figure of a
    model left in training mode: batch normalisation by its running statistics, which it leaves
    as they were)."""
    modules = [program for program in programs if isinstance(program, torch.nn.Module)]
    training = [module for program in modules for module in program.modules() if module.training]
    if not training:
        yield
        return
    for program in modules:
        program.train(False)
    try:
        yield
    finally:
        for module in training:
            module.training = True


def in_eval_mode(estimator: Callable) -> Callable:
    """Run ``estimator(model, guide, ...)`` (a held-out number: log p(x), the ELBO) with the
    modules of ``model`` and ``guide`` in evaluation mode (:func:`evaluation_mode`). In
    training mode a batch normalisation layer (``batch_norm=True``) normalised each chunk by its
    own statistics, so an example's number depended on the others in its chunk (and on the
    batch size), and the call moved the layer's running statistics towards the images scored
    (test images, say)."""
    @functools.wraps(estimator)
    def wrapper(model, guide, *args, **kwargs):
        with evaluation_mode(model, guide):
            return estimator(model, guide, *args, **kwargs)
    return wrapper
