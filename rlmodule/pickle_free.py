"""Decode a pickle into plain data without unpickling it: no code named by the file ever runs.

`decode(data, globals_table, what=...)` walks the opcode stream with `pickletools.genops` and
interprets it on a stack of our own. Containers, strings, numbers and bytes are built directly.
A global (`GLOBAL`/`STACK_GLOBAL`) is looked up in `globals_table` ("module.name" -> `Handler`)
and never imported: what a `REDUCE`, `NEWOBJ` or `BUILD` on it yields is computed by the
handler, our code, from the (already decoded, plain) arguments and state. A global missing from
the table, an opcode outside the allow-list (`INST`, `OBJ`, `EXT*`, `PERSID`, out-of-band
buffers, ...), a `REDUCE` on anything but a table entry, or arguments a handler does not accept
raise `PickleRefusedError` naming the global or opcode and the file.

What the data holds is bounded by the file's size, and more than `BUDGET_FACTOR` times the
file's bytes (plus `BUDGET_FLOOR`) is refused, so neither a "billion laughs" of shared references
nor one byte string reused by many arrays can turn a small file into gigabytes or an endless walk:
every value counts each time it is reached, a string or bytes its length too; a further reference
to a shared node (the memo) counts the values it reaches (memoised, so the walk stays linear) but
not their bytes, as nothing is copied; and what a handler copies (an array built from bytes, the
arrays of a space) counts once more, less the bytes just counted for its arguments.
Set members and dict keys must be flat (strings, numbers, tuples of strings and ints): nothing
deep or unhashable is ever hashed.

`NUMPY_GLOBALS` rebuilds numpy arrays, scalars and dtypes under numpy 1.x (`numpy.core.*`) and
2.x (`numpy._core.*`) names from their bytes (numeric and bool dtypes only: object arrays hold
pickles of their own and are refused); `COLLECTIONS_GLOBALS` gives `OrderedDict`.
"""

from __future__ import annotations

import math
import pickletools
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from rlmodule.errors import PickleRefusedError

__all__ = ["COLLECTIONS_GLOBALS", "Handler", "NUMPY_GLOBALS", "decode"]

MAX_DEPTH = 200
BUDGET_FACTOR = 4  # what a file may hold: this many units per byte of the file ...
BUDGET_FLOOR = 1 << 16  # ... plus this many (a unit: one value, or one byte of a string/bytes/array)


@dataclass(frozen=True)
class Handler:
    """What a global of the allow-list may become.

    value: the global used as a value (e.g. a class named in a spec) -> what we put there.
    reduce: `REDUCE` with these arguments (and the state of a later `BUILD`) -> our object.
    new: `NEWOBJ` with these arguments and the state of a later `BUILD` -> our object.
    eager: `reduce` runs at once (its result is a container the stream fills, e.g. OrderedDict).
    cost: (arguments, state) -> the units (values and bytes) the object will allocate beyond its
        arguments (e.g. a space's default arrays, sized by a number in the file), charged to the
        budget before `reduce` or `new` runs; it raises (ValueError, ...) on sizes beyond reason.
    """

    name: str
    value: Optional[Callable[[], Any]] = None
    reduce: Optional[Callable[[tuple, Any], Any]] = None
    new: Optional[Callable[[tuple, Any], Any]] = None
    eager: bool = False
    cost: Optional[Callable[[tuple, Any], int]] = None


@dataclass(eq=False)
class _Global:
    handler: Handler


@dataclass(eq=False)
class _Pending:
    """An object a handler builds once its arguments and `BUILD` state are decoded."""

    handler: Handler
    how: str  # "reduce" or "new"
    args: tuple
    state: Any = None
    built: bool = False


_NO_STATE = object()

_SIMPLE = {
    "NONE": lambda arg: None, "NEWTRUE": lambda arg: True, "NEWFALSE": lambda arg: False,
    "EMPTY_DICT": lambda arg: {}, "EMPTY_LIST": lambda arg: [], "EMPTY_TUPLE": lambda arg: (),
    "EMPTY_SET": lambda arg: set(),
}
_VALUES = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
           "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
           "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}
_IGNORED = {"PROTO", "FRAME"}
_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET = {"GET", "BINGET", "LONG_BINGET"}


class _Machine:
    def __init__(self, table: dict[str, Handler], what: str, budget: int) -> None:
        self.table, self.what = table, what
        self.stack: list = []
        self.marks: list[list] = []
        self.memo: dict[int, Any] = {}
        self.budget, self.spent = budget, 0
        self.nodes: dict[int, int] = {}  # id of a materialised node -> the values reaching it reaches
        self.walked = 0  # values reached so far, those of shared nodes once per reference
        self.held = 0  # bytes counted so far as reached, not yet copied by a handler

    def charge(self, units: int) -> None:
        self.spent += units
        if self.spent > self.budget:
            raise self.refuse(
                f"it holds far more than its size (over {self.budget:,} values and bytes, "
                f"{BUDGET_FACTOR} per byte of the file): data reached through many shared "
                "references or reused many times (a 'billion laughs') is not allowed")

    def refuse(self, why: str) -> PickleRefusedError:
        return PickleRefusedError(f"{self.what}: {why}; refused without running anything")

    # -- the stack --------------------------------------------------------------------------------
    def pop(self):
        if not self.stack:
            raise self.refuse("malformed pickle (stack underflow)")
        return self.stack.pop()

    def pop_mark(self) -> list:
        if not self.marks:
            raise self.refuse("malformed pickle (no MARK)")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def top(self):
        if not self.stack:
            raise self.refuse("malformed pickle (stack underflow)")
        return self.stack[-1]

    # -- opcodes -----------------------------------------------------------------------------------
    def step(self, name: str, arg, pos: int) -> bool:
        if name in _SIMPLE:
            self.stack.append(_SIMPLE[name](arg))
        elif name in _VALUES:
            self.stack.append(arg)
        elif name == "BYTEARRAY8":  # numpy's protocol 5 buffers: kept, so arrays need no copy
            self.stack.append(arg)
        elif name in _IGNORED:
            pass
        elif name == "STOP":
            return True
        elif name == "MARK":
            self.marks.append(self.stack)
            self.stack = []
        elif name in ("POP", "POP_MARK", "DUP"):
            self._pops(name)
        elif name in _PUT or name == "MEMOIZE":
            self.memo[len(self.memo) if name == "MEMOIZE" else arg] = self.top()
        elif name in _GET:
            if arg not in self.memo:
                raise self.refuse(f"malformed pickle ({name} {arg} of an unknown memo entry)")
            self.stack.append(self.memo[arg])
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            self.stack.append(self._global(name, arg))
        else:
            self._structured(name, pos)
        return False

    def _pops(self, name: str) -> None:
        if name == "POP":
            self.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        else:
            self.stack.append(self.top())

    def _structured(self, name: str, pos: int) -> None:
        handlers = {
            "TUPLE": lambda: self._push(tuple(self.pop_mark())),
            "TUPLE1": lambda: self._tuple(1), "TUPLE2": lambda: self._tuple(2),
            "TUPLE3": lambda: self._tuple(3),
            "LIST": lambda: self._push(self.pop_mark()),
            "DICT": self._dict,
            "APPEND": lambda: self._append([self.pop()]),
            "APPENDS": lambda: self._append(self.pop_mark()),
            "SETITEM": lambda: self._setitems([self.pop_pair()]),
            "SETITEMS": lambda: self._setitems(self._mark_pairs()),
            "ADDITEMS": self._additems,
            "FROZENSET": lambda: self._push(frozenset(self._hashable(self.pop_mark()))),
            "REDUCE": self._reduce, "NEWOBJ": self._newobj, "NEWOBJ_EX": self._newobj_ex,
            "BUILD": self._build,
        }
        if name not in handlers:
            raise self.refuse(f"opcode {name} at byte {pos} is not allowed (real RLlib "
                              "checkpoints hold only plain data, numpy arrays and allowed classes)")
        handlers[name]()

    def _push(self, value) -> None:  # after pop_mark: self.stack is the outer stack again
        self.stack.append(value)

    def _tuple(self, n: int) -> None:
        if len(self.stack) < n:
            raise self.refuse("malformed pickle (stack underflow)")
        items = self.stack[-n:]
        del self.stack[-n:]
        self.stack.append(tuple(items))

    def pop_pair(self):
        value = self.pop()
        return self.pop(), value

    def _mark_pairs(self) -> list:
        items = self.pop_mark()
        if len(items) % 2:
            raise self.refuse("malformed pickle (SETITEMS with an odd number of items)")
        return list(zip(items[0::2], items[1::2]))

    def _dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise self.refuse("malformed pickle (DICT with an odd number of items)")
        self._push({self._key(k): v for k, v in zip(items[0::2], items[1::2])})

    def _key(self, key):
        if _flat(key):
            return key
        raise self.refuse(f"a dict key or set member of type {type(key).__name__} is not allowed")

    def _hashable(self, items: list) -> list:
        return [self._key(x) for x in items]

    def _append(self, items: list) -> None:
        target = self.top()
        if not isinstance(target, list):
            raise self.refuse(f"APPEND to a {_kind(target)} is not allowed")
        target.extend(items)

    def _setitems(self, pairs: list) -> None:
        target = self.top()
        if not isinstance(target, dict):
            raise self.refuse(f"SETITEM on a {_kind(target)} is not allowed")
        for key, value in pairs:
            target[self._key(key)] = value

    def _additems(self) -> None:
        items = self.pop_mark()
        target = self.top()
        if not isinstance(target, set):
            raise self.refuse(f"ADDITEMS to a {_kind(target)} is not allowed")
        target.update(self._hashable(items))

    def _global(self, name: str, arg) -> _Global:
        if name == "STACK_GLOBAL":
            qualname, module = self.pop(), self.pop()
            if not (isinstance(module, str) and isinstance(qualname, str)):
                raise self.refuse("STACK_GLOBAL with a module or name that is not a string")
        else:
            module, _, qualname = str(arg).partition(" ")
        full = f"{module}.{qualname}"
        handler = self.table.get(full)
        if handler is None:
            raise self.refuse(_not_allowed(full))
        return _Global(handler)

    def _callable(self, opcode: str):
        target = self.pop()
        if not isinstance(target, _Global):
            raise self.refuse(f"{opcode} on a {_kind(target)} (only allowed globals may be called)")
        return target.handler

    def _reduce(self) -> None:
        args = self.pop()
        handler = self._callable("REDUCE")
        if handler.reduce is None or not isinstance(args, tuple):
            raise self.refuse(f"REDUCE on {handler.name} is not allowed")
        if handler.eager:
            out = self._call(handler, handler.reduce, args, _NO_STATE)
            self.charge(1 + len(out))  # (a container, or bytes a copy of which was just made)
            self.stack.append(out)
        else:
            self.stack.append(_Pending(handler, "reduce", args))

    def _newobj(self) -> None:
        args = self.pop()
        handler = self._callable("NEWOBJ")
        if handler.new is None or not isinstance(args, tuple):
            raise self.refuse(f"NEWOBJ of {handler.name} is not allowed")
        self.stack.append(_Pending(handler, "new", args))

    def _newobj_ex(self) -> None:
        kwargs, args = self.pop(), self.pop()
        if kwargs:
            raise self.refuse("NEWOBJ_EX with keyword arguments is not allowed")
        self.stack.append(args)
        self._newobj()

    def _build(self) -> None:
        state = self.pop()
        target = self.top()
        if not isinstance(target, _Pending) or target.built:
            raise self.refuse(f"BUILD on a {_kind(target)} is not allowed")
        target.state, target.built = state, True

    def _call(self, handler: Handler, fn, args, state):
        try:
            return fn(args, state)
        except PickleRefusedError:
            raise
        except (TypeError, ValueError, KeyError, AssertionError, AttributeError, IndexError,
                ArithmeticError) as e:  # (OverflowError: gymnasium's int64 of a number beyond it)
            raise self.refuse(f"{handler.name} cannot be rebuilt from what the file holds "
                              f"({type(e).__name__}: {e})") from None

    # -- from the decoded stack to plain data --------------------------------------------------------
    def materialise(self, obj, seen: dict, busy: set, depth: int = 0):
        if depth > MAX_DEPTH:
            raise self.refuse(f"data nested deeper than {MAX_DEPTH} levels")
        self.walked += 1
        if isinstance(obj, (str, bytes, bytearray)):
            self.charge(1 + len(obj))  # each use: an array built on bytes copies them
            self.held += len(obj)
            return obj  # a bytearray (BYTEARRAY8) becomes an array's memory without a copy
        if isinstance(obj, int):
            self.charge(1 + obj.bit_length() // 64)
            return obj
        if isinstance(obj, (float, type(None))):
            self.charge(1)
            return obj
        key = id(obj)
        if key in seen:  # the same object again, nothing copied: what walking it (or encoding
            self.walked += self.nodes[key] - 1  # it later) visits counts, not its bytes again
            self.charge(self.nodes[key])
            return seen[key]
        if key in busy:
            raise self.refuse("a self-referencing structure is not allowed")
        busy.add(key)
        walked = self.walked - 1
        self.charge(1)
        out = self._materialise(obj, seen, busy, depth + 1)
        busy.discard(key)
        self.nodes[key] = self.walked - walked
        seen[key] = out
        return out

    def _copied(self, out, held: int) -> None:
        """Count what a handler's result copied (`held`: the bytes its arguments just counted)."""
        arrays = [out] if isinstance(out, np.ndarray) else [
            v for v in getattr(out, "__dict__", {}).values() if isinstance(v, np.ndarray)]
        made = sum(a.nbytes for a in arrays if a.base is None)  # a view (of a bytearray) is no copy
        self.charge(max(0, made - held))  # an argument reached through the memo counted no bytes
        self.held += max(0, made - held)

    def _materialise(self, obj, seen, busy, depth):
        def m(x):
            return self.materialise(x, seen, busy, depth)

        if isinstance(obj, dict):
            out = OrderedDict() if isinstance(obj, OrderedDict) else {}
            for k, v in obj.items():
                out[m(k)] = m(v)
            return out
        if isinstance(obj, list):
            return [m(x) for x in obj]
        if isinstance(obj, tuple):
            return tuple(m(x) for x in obj)
        if isinstance(obj, (set, frozenset)):
            return type(obj)(m(x) for x in obj)
        if isinstance(obj, _Global):
            if obj.handler.value is None:
                raise self.refuse(f"{obj.handler.name} may not appear as a value")
            return obj.handler.value()
        if isinstance(obj, _Pending):
            fn = obj.handler.reduce if obj.how == "reduce" else obj.handler.new
            held = self.held
            state = m(obj.state) if obj.built else _NO_STATE
            args = m(obj.args)
            if obj.handler.cost is not None:  # what it will allocate, before it does
                units = self._call(obj.handler, obj.handler.cost, args, state)
                self.charge(units)
                self.held += units  # (not counted again once made)
            out = self._call(obj.handler, fn, args, state)
            self._copied(out, self.held - held)
            return out
        if isinstance(obj, (np.ndarray, np.generic, np.dtype)):
            self.charge(getattr(obj, "nbytes", 0))
            self.held += getattr(obj, "nbytes", 0)
            return obj  # built by an eager handler of ours
        raise self.refuse(f"a decoded {type(obj).__name__} is not plain data")


def _kind(obj) -> str:
    if isinstance(obj, _Global):
        return f"global {obj.handler.name}"
    if isinstance(obj, _Pending):
        return f"{obj.handler.name} object"
    return type(obj).__name__


def _not_allowed(full: str) -> str:
    module = full.rsplit(".", 1)[0]
    if module.split(".")[0] == "cloudpickle":
        return (f"global {full!r}: the file holds a class or function pickled by value "
                "(cloudpickle does that for code defined in a notebook or __main__), which can only "
                "be rebuilt by running its code; define it in an importable module and map it to "
                "an rlmodule class")
    if module == "__main__":
        return (f"global {full!r} was defined in __main__ (a script or notebook) and cannot be "
                "imported; only the allow-listed RLlib, gymnasium and numpy names are rebuilt")
    return (f"global {full!r} is not on the allow-list (plain data, numpy arrays/scalars/dtypes, "
            "gymnasium spaces and RLlib's spec, config, module and catalog classes)")


def _flat(key) -> bool:
    """Whether `key` may be a dict key or set member: hashing it is cheap and cannot fail."""
    return isinstance(key, (str, bytes, int, float, bool, type(None))) or (
        isinstance(key, tuple) and all(isinstance(k, (str, int)) for k in key))


def decode(data: bytes, table: dict[str, Handler], *, what: str = "pickle") -> Any:
    """The plain data a pickle holds, built by our code only; refuses anything else."""
    machine = _Machine(table, what, BUDGET_FACTOR * len(data) + BUDGET_FLOOR)
    try:
        for opcode, arg, pos in pickletools.genops(data):
            if machine.step(opcode.name, arg, pos):
                break
        else:
            raise machine.refuse("malformed pickle (no STOP opcode)")
    except PickleRefusedError:
        raise
    except (ValueError, EOFError, UnicodeDecodeError) as e:
        raise machine.refuse(f"not a readable pickle ({e})") from None
    if len(machine.stack) != 1 or machine.marks:
        raise machine.refuse("malformed pickle (stack not one value at STOP)")
    return machine.materialise(machine.stack[0], {}, set())


# -- numpy -------------------------------------------------------------------------------------------

_TYPESTR = re.compile(r"^[<>|=]?(b1|[iu][1248]|f[248]|c(8|16)|[US][0-9]{1,6})$")


def _no_state(state) -> None:
    if state is not _NO_STATE:
        raise ValueError("unexpected BUILD state")


def _dtype(args: tuple, state) -> np.dtype:
    typestr, *_ = args
    if not isinstance(typestr, str) or not _TYPESTR.match(typestr):
        raise ValueError(f"dtype {typestr!r} is not a numeric, bool or fixed-width string dtype")
    order = "|"
    if state is not _NO_STATE:
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
            raise ValueError(f"dtype state {state!r} is not a plain dtype's")
        if any(x is not None for x in state[2:5]) or (len(state) == 9 and state[8]):
            raise ValueError("structured or sub-array dtypes are not allowed")
        order = state[1]
    if order not in ("<", ">", "|", "="):
        raise ValueError(f"byte order {order!r}")
    return np.dtype(typestr if typestr[0] in "<>|=" or order in "|=" else order + typestr)


def _check_dtype(dtype) -> np.dtype:
    if not isinstance(dtype, np.dtype) or not _TYPESTR.match(dtype.str):
        raise ValueError(f"{dtype!r} is not a numeric, bool or fixed-width string dtype")
    return dtype


def _shape(shape) -> tuple:
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"shape {shape!r}")
    return shape


def _array(raw, dtype, shape, order: str) -> np.ndarray:
    dtype, shape = _check_dtype(dtype), _shape(shape)
    if not isinstance(raw, (bytes, bytearray)):
        raise ValueError(f"array data is a {type(raw).__name__}, not bytes (object arrays are refused)")
    if order not in ("C", "F"):
        raise ValueError(f"order {order!r}")
    if len(raw) != math.prod(shape) * dtype.itemsize:  # (exact: np.prod wrapped around, with a RuntimeWarning)
        raise ValueError(f"{len(raw)} bytes do not fill shape {shape} of {dtype}")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape, order=order)
    return array if isinstance(raw, bytearray) else array.copy(order="K")  # own, writable memory


def _frombuffer(args: tuple, state) -> np.ndarray:
    _no_state(state)
    raw, dtype, shape, order = args
    return _array(raw, dtype, shape, order)


def _scalar(args: tuple, state) -> np.generic:
    _no_state(state)
    dtype, raw = args
    dtype = _check_dtype(dtype)
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != dtype.itemsize:
        raise ValueError("scalar data does not fit its dtype (object scalars are refused)")
    return np.frombuffer(raw, dtype=dtype)[0].copy()


_NDARRAY = Handler("numpy.ndarray", value=lambda: _NDARRAY)


def _reconstruct(args: tuple, state) -> np.ndarray:
    cls, shape, code = args
    if cls is not _NDARRAY or shape != (0,) or code not in (b"b", "b"):
        raise ValueError("only plain ndarrays are rebuilt")
    if not (isinstance(state, tuple) and len(state) == 5):
        raise ValueError("missing or malformed array state")
    _version, shape, dtype, fortran, raw = state
    if isinstance(raw, str):  # protocol 0/1 writes the bytes as latin-1 text
        raw = raw.encode("latin-1")
    return _array(raw, dtype, tuple(shape), "F" if fortran else "C")


def _numpy_globals() -> dict[str, Handler]:
    table = {"numpy.dtype": Handler("numpy.dtype", reduce=_dtype), "numpy.ndarray": _NDARRAY}
    for core in ("numpy.core", "numpy._core"):
        table[f"{core}.multiarray.scalar"] = Handler(f"{core}.multiarray.scalar", reduce=_scalar)
        table[f"{core}.multiarray._reconstruct"] = Handler(
            f"{core}.multiarray._reconstruct", reduce=_reconstruct)
        table[f"{core}.numeric._frombuffer"] = Handler(f"{core}.numeric._frombuffer",
                                                       reduce=_frombuffer)
    return table


NUMPY_GLOBALS: dict[str, Handler] = _numpy_globals()


def _ordered_dict(args: tuple, state) -> OrderedDict:
    _no_state(state)
    if args == ():
        return OrderedDict()
    (pairs,) = args
    if not isinstance(pairs, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2
                                              for p in pairs):
        raise ValueError("OrderedDict arguments are not (key, value) pairs")
    _flat_items((k for k, _ in pairs), "an OrderedDict key")
    return OrderedDict(pairs)


def _flat_items(items, what: str) -> None:
    for item in items:
        if not _flat(item):
            raise ValueError(f"{what} of type {type(item).__name__} is not allowed (only strings, "
                             "numbers and flat tuples are hashed)")


def _codecs_encode(args: tuple, state) -> bytes:
    _no_state(state)
    text, encoding = args
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError("only _codecs.encode(str, 'latin1') (protocol 2 bytes) is rebuilt")
    return text.encode("latin-1")


def _builtin(kind: type) -> Callable:
    """Protocol 2's `bytes()`, `set([...])` and `frozenset([...])` (no opcodes of their own)."""
    def build(args: tuple, state):
        _no_state(state)
        if args == ():
            return kind()
        (items,) = args
        if not isinstance(items, list) or (kind is bytes and items):
            raise ValueError(f"{kind.__name__} arguments must be a list")
        _flat_items(items, f"a {kind.__name__} member")
        return kind(items)
    return build


def _collections() -> dict[str, Handler]:
    table = {
        "collections.OrderedDict": Handler("collections.OrderedDict", reduce=_ordered_dict, eager=True),
        "_codecs.encode": Handler("_codecs.encode", reduce=_codecs_encode, eager=True),
    }
    for module in ("builtins", "__builtin__"):
        for kind in (bytes, set, frozenset):
            name = f"{module}.{kind.__name__}"
            table[name] = Handler(name, reduce=_builtin(kind), eager=True)
    return table


COLLECTIONS_GLOBALS: dict[str, Handler] = _collections()
