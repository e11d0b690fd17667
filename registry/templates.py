"""Meta-device builds of recorded specs, kept by spec digest and copied for each load.

Building a module on the ``meta`` device (``registry.replay``) runs its constructor under a torch
function mode: for a module of many small tensors that costs more than loading them. Specs are
content-addressed and immutable, so a load of a spec loaded before copies the build it kept (what
``copy.deepcopy`` makes of it, with the loaded tensors or fresh, uninitialised CPU storage in place of
each meta tensor) instead of running the constructor again. A build is kept only when ``replay`` would
fill it exactly (every tensor a parameter or persistent buffer in the state, rlmodule's own
``set_state``) and a first copy proves the copies independent: nothing reachable from the copy
(attributes, closures of hooks and lambdas, bound methods, weak references) is part of the kept
build. Anything else, or any failure, and the load builds as before. Keyed by digest, torch's
default dtype and the trusted modules.
"""

from __future__ import annotations

import copy
import copyreg
import functools
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from registry import replay
from storage import forklocks
from rlmodule.torch_rl_module import stock_loading

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Template:
    """A module built on ``meta`` and the flat state keys it needs."""

    module: Any
    keys: frozenset[str]
    slots: list[tuple[str, Any]]  # replay.state_slots(module)


class Templates:
    """The kept builds of one registry (at most ``size``; ``False`` marks a spec that cannot have one)."""

    def __init__(self, size: int = 64) -> None:
        self._size, self._items, self._lock = size, {}, forklocks.new_lock(self)

    def rebuild(self, digest: str, spec: Mapping[str, Any], state: dict, tensors: Mapping[str, Any],
                trusted_modules: Any = None) -> Any:
        """The module of ``spec`` with ``state`` set, copied from the kept build; ``None`` if there is none."""
        template = self.get(digest, spec, trusted_modules)
        if template is None or template.keys != set(tensors):
            return None
        try:
            return _filled(template, state, tensors)
        except Exception as exc:  # noqa: BLE001 - any failure means: build it as before
            log.debug("copy of the kept build of %s failed (%r); building normally", spec.get("module_class"), exc)
            return None

    def metadata_only(self, digest: str, spec: Mapping[str, Any], trusted_modules: Any = None) -> Any:
        """The kept build itself, on ``meta`` (``replay.metadata_only``'s), ``None`` if there is none: only
        to read what a checkpoint folder says besides its tensors (metadata, constructor arguments,
        components); never to change, as every later load copies it."""
        template = self.get(digest, spec, trusted_modules)
        return None if template is None else template.module

    def get(self, digest: str, spec: Mapping[str, Any], trusted_modules: Any = None) -> Template | None:
        """The kept build of ``spec`` (made on first use), ``None`` if it cannot have one."""
        key = (digest, torch.get_default_dtype(), repr(trusted_modules))
        template = self._items.get(key)
        if template is None:
            template = _make(spec, trusted_modules)
            with self._lock:
                self._items[key] = template
                while len(self._items) > self._size:
                    del self._items[next(iter(self._items))]
        return template or None


def _make(spec: Mapping[str, Any], trusted_modules: Any) -> Template | bool:
    """The build of ``spec`` on ``meta`` if copies of it are exact and independent, else ``False``."""
    try:
        spec_obj = replay.spec_object(spec, trusted_modules)  # outside the meta context: class resolution may import
        with replay.on_meta():
            module = spec_obj.build()
        roots = list(replay._torch_roots(module))
        if not roots or not all(replay._only_registered_tensors(r) and stock_loading(r) for r in roots) or (
                not replay._stock_set_state(module)):
            return False
        if any(type(p) is not torch.nn.Parameter for r in roots for p in r.parameters()):
            return False
        slots = replay.state_slots(module)
        held = {id(t) for r in roots for t in (*r.parameters(), *r.buffers())}
        if slots is None or {id(t) for _, t in slots} != held:  # a tensor the state leaves out (a state_dict
            return False  # hook): a load's copy would find it in no memo, and keep it on meta
        owned = _owned(module, roots)
        if replay.reaches(_copy(module), lambda obj: id(obj) in owned):
            return False
        return Template(module, frozenset(key for key, _ in slots), slots)
    except Exception as exc:  # noqa: BLE001 - any failure means: no template
        log.debug("no kept build of %s (%r)", spec.get("module_class"), exc)
        return False


def _copy(module: Any) -> Any:
    """A deep copy of a meta build whose tensors are fresh, uninitialised CPU ones."""
    memo: dict[int, Any] = {}
    for root in replay._torch_roots(module):
        for sub in root.modules():
            for p in sub._parameters.values():
                if p is not None:
                    memo[id(p)] = torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype), requires_grad=p.requires_grad)
            for b in sub._buffers.values():
                if b is not None:
                    memo[id(b)] = torch.empty(b.shape, dtype=b.dtype)
    return _deepcopy(module, memo)


def _filled(template: Template, state: dict, tensors: Mapping[str, Any]) -> Any:
    adopted = replay._adopted(template.module, tensors, template.slots)
    if adopted is not None:  # the loaded tensors themselves take the meta tensors' places
        return _deepcopy(template.module, dict(adopted))
    module = _copy(template.module)
    if not replay._copy_in(module, tensors, ""):
        module.set_state(state)
    return module


def _deepcopy(obj: Any, memo: dict[int, Any]) -> Any:
    """``copy.deepcopy(obj, memo)`` of a build whose every parameter and buffer is in ``memo`` (``KeyError``
    if one is not: no meta tensor is copied), its modules copied by ``_copy_module``."""
    if isinstance(obj, torch.nn.Module):
        return _copy_module(obj, memo)
    for root in replay._torch_roots(obj):  # a MultiRLModule's modules, then the rest of it
        _copy_module(root, memo)
    return copy.deepcopy(obj, memo)


def _copy_module(module: torch.nn.Module, memo: dict[int, Any]) -> Any:
    """What ``copy.deepcopy`` makes of an ``nn.Module`` (``__reduce_ex__``: a new instance handed a deep
    copy of ``__getstate__`` through ``__setstate__``), without its generic walk through torch's own
    bookkeeping: parameters and buffers are taken from ``memo``, sub-modules copied alike, empty hook
    dicts made anew; any other attribute is ``copy.deepcopy``'d with the same ``memo``. A class that
    copies or pickles itself its own way is left to ``copy.deepcopy``."""
    done = memo.get(id(module))
    if done is not None:
        return done
    cls = type(module)
    if not _plain_module(cls):
        return copy.deepcopy(module, memo)
    new = cls.__new__(cls)
    memo[id(module)] = new
    state = {}
    for key, value in module.__getstate__().items():
        kind = type(value)
        if kind is OrderedDict and not value:  # a hook dict (through the memo: one shared stays shared)
            copied = memo.get(id(value))
            if copied is None:
                copied = memo[id(value)] = OrderedDict()
            value = copied
        elif key in _TENSOR_REGISTRIES and kind in (dict, OrderedDict):
            value = kind([(name, None if t is None else memo[id(t)]) for name, t in value.items()])
        elif key == "_modules" and kind in (dict, OrderedDict):
            value = kind([(name, None if m is None else _copy_module(m, memo)) for name, m in value.items()])
        elif kind not in _IMMUTABLE:
            value = copy.deepcopy(value, memo)
        state[key] = value
    new.__setstate__(state)
    return new


_TENSOR_REGISTRIES = ("_parameters", "_buffers")
_IMMUTABLE = (bool, int, float, str, type(None))


@functools.lru_cache(maxsize=256)
def _plain_module(cls: type) -> bool:
    """Whether ``copy.deepcopy`` copies an instance of ``cls`` as it does any ``nn.Module`` (reduce, a deep
    copy of ``__getstate__``, ``__setstate__``), nothing of the class's own in the way."""
    module = torch.nn.Module
    return (
        getattr(cls, "__deepcopy__", None) is None
        and cls not in copy._deepcopy_dispatch  # what deepcopy consults first
        and cls not in copyreg.dispatch_table
        and cls.__reduce_ex__ is object.__reduce_ex__
        and cls.__reduce__ is object.__reduce__
        and cls.__getstate__ is module.__getstate__
        and cls.__setstate__ is module.__setstate__
        and not copyreg._slotnames(cls)
    )


def _owned(module: Any, roots: list[torch.nn.Module]) -> set[int]:
    """The ids of the build's own objects: the module, its sub-modules and their tensors."""
    owned = {id(module)}
    for root in roots:
        owned |= {id(m) for m in root.modules()}
        owned |= {id(t) for t in (*root.parameters(), *root.buffers())}
    return owned


