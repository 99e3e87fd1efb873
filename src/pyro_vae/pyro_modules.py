"""The models' and guides' torch networks as Pyro modules, with less fixed cost a call.

:func:`to_pyro_network_` does what Pyro's ``to_pyro_module_`` does for a network (every
module that holds parameters becomes a ``PyroModule[cls]``, its parameters named in the
param store as ``to_pyro_module_`` names them, so Pyro's own ``SVI`` finds them), with two
savings that change no value and no handler's view:

* Parameter-free modules (activations, ``Flatten``) stay plain torch modules: a
  ``Sequential`` calls its children without attribute look-ups, so they issue no Pyro
  statement either way, and they skip ``PyroModule.__call__``'s context and settings
  look-ups (about 12 us a call on the benchmark machine).
* The modules with parameters get the :class:`LeanNetwork` mixin: a call nested in a
  running Pyro module (the model's or guide's) skips what Pyro would do there for nothing,
  and reading a parameter skips its ``pyro.param`` statement when that statement could
  change nothing and be seen by nobody (see :class:`LeanNetwork`).

On a 784-400-50 VAE step this removes about 0.4 ms of the roughly 2 ms that Pyro's
machinery adds to a hand-written PyTorch step (docs/performance.md, issue #16 fifth pass).
"""

from __future__ import annotations

import pyro.nn.module as _pyro_module
from pyro.nn.module import PyroModule, to_pyro_module_
from pyro.poutine.plate_messenger import PlateMessenger
from pyro.poutine.runtime import _PYRO_PARAM_STORE, _PYRO_STACK
from torch import nn

#: Name of the class attribute by which a Pyro messenger declares that it changes nothing and
#: records nothing for a ``pyro.param`` statement of an ``nn.Parameter`` that the param store
#: already holds under the statement's name (the training fast path's ``SiteRecorder`` and
#: ``ScaleSites`` do). Pyro's plates are such messengers too (they act on parameters only for
#: statements with an ``event_dim``, which a module's parameter reads do not give).
IGNORES_STORED_PARAMS = "ignores_stored_params"


def _statement_is_idle(fullname: str, value: nn.Parameter) -> bool:
    """True when ``pyro.param(fullname, value)`` could change nothing: the store holds
    ``value`` itself under ``fullname`` and no handler on the stack looks at such a statement
    (with no handler, Pyro's statement only looks the name up in the store)."""
    if _PYRO_PARAM_STORE._params.get(fullname) is not value:
        return False
    for frame in _PYRO_STACK:
        if not (getattr(frame, IGNORES_STORED_PARAMS, False) or isinstance(frame, PlateMessenger)):
            return False
    return True


class LeanNetwork:
    """Mixin put before ``PyroModule[cls]`` in a network module's class by :func:`to_pyro_network_`.

    * A call counts itself in and out of its Pyro module context and calls the torch module
      (the outermost call also marks the context used and clears its cache on the way out),
      which is all that ``PyroModule.__call__`` does when module-local parameters are off (the
      default; with them on, the call is ``PyroModule``'s): it would look the setting up twice
      through ``pyro.settings`` (an ``importlib`` import each) and ``validate_poutine`` once,
      whose check applies only with module-local parameters.
    * Reading a Pyro submodule that already has its name in the module tree returns it, as
      ``PyroModule.__getattr__`` does after three look-ups that cannot apply to it.
    * Reading an ``nn.Parameter`` while the context is active returns it without a
      ``pyro.param`` statement when the statement is idle (:func:`_statement_is_idle`);
      otherwise ``PyroModule``'s own ``__getattr__`` issues it, so a first call still
      registers the parameter, ``poutine.trace`` (Pyro's ``SVI``) still sees every statement,
      and a name bound to another tensor in the store is still synchronised.
    """

    def __call__(self, *args, **kwargs):
        context = self.__dict__["_pyro_context"]
        if not context.active:
            if _pyro_module._MODULE_LOCAL_PARAMS:  # what pyro.settings.get("module_local_params") reads
                return PyroModule.__call__(self, *args, **kwargs)
            context.used = True
        context.active += 1
        try:
            return nn.Module.__call__(self, *args, **kwargs)
        finally:
            context.active -= 1
            if not context.active:
                context.cache.clear()

    def __getattr__(self, name: str):
        d = self.__dict__
        parameters = d.get("_parameters")
        if parameters is not None and name in parameters:
            value = parameters[name]
            if isinstance(value, nn.Parameter) and d["_pyro_context"].active \
                    and _statement_is_idle(self._pyro_get_fullname(name), value):
                return value
        modules = d.get("_modules")
        if modules is not None and name in modules:
            value = modules[name]
            # A named Pyro submodule is returned as it is by PyroModule.__getattr__ too (after its
            # PyroParam and PyroSample look-ups, which a submodule's name is not in).
            if isinstance(value, PyroModule) and value.__dict__.get("_pyro_name") \
                    and name not in d.get("_pyro_params", ()) and name not in d.get("_pyro_samples", ()):
                return value
        return PyroModule.__getattr__(self, name)


_LEAN_CLASSES: dict[type, type] = {}


def _lean_class(pyro_class: type) -> type:
    """``pyro_class`` (a ``PyroModule[cls]``) with :class:`LeanNetwork` in front, one per class."""
    if pyro_class not in _LEAN_CLASSES:
        torch_class = next(b for b in pyro_class.__bases__ if not issubclass(b, PyroModule))
        _LEAN_CLASSES[pyro_class] = type(pyro_class.__name__, (LeanNetwork, pyro_class), {
            "__reduce__": lambda self: (_new_lean, (torch_class,), getattr(self, "__getstate__", self.__dict__.copy)()),
            "__module__": pyro_class.__module__, "__qualname__": pyro_class.__qualname__})
    return _LEAN_CLASSES[pyro_class]


def _new_lean(torch_class: type) -> nn.Module:
    """An empty module of the lean class for ``torch_class`` (unpickling and ``copy.deepcopy``)."""
    module = nn.Module.__new__(PyroModule[torch_class])
    module.__class__ = _lean_class(PyroModule[torch_class])
    return module


def to_pyro_network_(module: nn.Module) -> nn.Module:
    """Convert ``module`` and its descendants that hold parameters or buffers in place into
    lean Pyro modules (``PyroModule[cls]`` with :class:`LeanNetwork`); parameter-free ones stay
    plain. Names (state dict, param store), the order of children and every module's
    ``isinstance`` relations are those of Pyro's ``to_pyro_module_``. Returns ``module``."""
    if not isinstance(module, PyroModule):
        to_pyro_module_(module, recurse=False)
    if not isinstance(module, LeanNetwork) and _made_by_pyro(type(module)):
        module.__class__ = _lean_class(type(module))
    order = list(module._modules)
    for name, child in list(module._modules.items()):
        if child is not None and _holds_state(child):
            to_pyro_network_(child)
            setattr(module, name, child)  # PyroModule.__setattr__ names it under its parent (and moves it last)
    for name in order:  # a Sequential's children back in their order
        module._modules[name] = module._modules.pop(name)
    return module


def _made_by_pyro(cls: type) -> bool:
    """``cls`` is ``PyroModule[torch_class]`` (a class written as a PyroModule subclass is left alone)."""
    first = cls.__bases__[0]
    return not issubclass(first, PyroModule) and PyroModule[first] is cls


def _holds_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())
