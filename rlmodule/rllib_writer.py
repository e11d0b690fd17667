"""Writes pickles of plain data for RLlib to read: the only module of rlreg that imports `pickle`.

It only ever pickles (`dumps`); nothing here or anywhere in rlreg unpickles (tests/test_layering.py
checks both). `Global`, `New` and `Call` let us name RLlib's classes and call gymnasium's space
constructors in the stream without importing ray: the pure-Python pickler is extended with one
save method each (STACK_GLOBAL; NEWOBJ + BUILD; REDUCE).
"""

from __future__ import annotations

import io
import pickle

__all__ = ["Call", "Global", "New", "dumps"]


class Global:
    """Pickles as a reference to `module.name` (a class we do not import)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class New:
    """Pickles as `cls.__new__(cls)` + BUILD(state): how a dataclass instance is pickled."""

    def __init__(self, cls: Global, state: dict) -> None:
        self.cls, self.state = cls, state


class Call:
    """Pickles as `func(*args)` (REDUCE)."""

    def __init__(self, func: Global, args: tuple) -> None:
        self.func, self.args = func, args


class _Writer(pickle._Pickler):
    """The pure-Python pickler plus our three reference types."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_global(self, obj: Global) -> None:
        self.save(obj.module)
        self.save(obj.name)
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)

    def _save_new(self, obj: New) -> None:
        self.save(obj.cls)
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        self.save(obj.state)
        self.write(pickle.BUILD)

    def _save_call(self, obj: Call) -> None:
        self.save(obj.func)
        self.save(obj.args)
        self.write(pickle.REDUCE)
        self.memoize(obj)

    dispatch[Global] = _save_global
    dispatch[New] = _save_new
    dispatch[Call] = _save_call


def dumps(obj) -> bytes:
    """Protocol 5 pickle of `obj` (plain data, numpy arrays and our three reference types)."""
    buf = io.BytesIO()
    _Writer(buf, protocol=5).dump(obj)
    return buf.getvalue()
