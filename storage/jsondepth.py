"""The one JSON nesting limit, checked once and up front, before any recursive parser or encoder runs.

Python's ``json`` recurses once per level: 10,000 levels raise a raw ``RecursionError``, and a few
hundred pass ``json.loads`` only to fail later, deeper in the stack (an event append serialises the
payload again). So every JSON rlreg reads or records -- checkpoint files, safetensors headers,
snapshot metadata -- is first checked against ``MAX_JSON_DEPTH`` without recursion, and refused with
``JSONDepthError`` naming where it came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from storage.errors import JSONDepthError

MAX_JSON_DEPTH = 100  # arrays and objects inside each other; real specs and headers stay below 20

# A JSON string as one token (so brackets inside strings are skipped), or one bracket. A string left open
# runs to the end of the text: otherwise the search tried again from each quote inside it, each try
# running to the end (an 80 KB body of escaped quotes took 26 s to refuse).
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)  # as _TOKEN's strings, unrolled (faster)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_PAIR = re.compile(rb"\(\)")
_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")


def text_depth(data: bytes | bytearray | memoryview | str) -> int:
    """The deepest nesting of arrays and objects in JSON text (linear, no recursion; not a validator)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else _as_utf8(bytes(data))
    depth = _balanced_depth(raw)
    return depth if depth is not None else _scanned_depth(raw)


def _as_utf8(raw: bytes) -> bytes:
    """``raw`` in UTF-8: ``json.loads`` reads bytes in UTF-16 and UTF-32 too, whose brackets and quotes
    the patterns here would misread (an escaped quote's ``00`` byte hid every bracket after it)."""
    encoding = json.detect_encoding(raw)
    if encoding == "utf-8":
        return raw
    try:
        return raw.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
    except UnicodeError:  # (json.loads refuses it too)
        return raw


def _balanced_depth(raw: bytes) -> int | None:
    """The depth of balanced brackets by removing the innermost pairs level by level (each pass in C);
    ``None`` for unbalanced brackets or nesting past the limit (then scanned token by token)."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw)).translate(_AS_PARENS)
    for depth in range(MAX_JSON_DEPTH + 1):
        if not brackets:
            return depth
        brackets, removed = _PAIR.subn(b"", brackets)
        if not removed:
            return None
    return None


def _scanned_depth(raw: bytes) -> int:
    depth = deepest = 0
    for match in _TOKEN.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def check_text(data: bytes | bytearray | memoryview | str, where: str) -> None:
    """Raise ``JSONDepthError`` naming ``where`` if the JSON text nests deeper than ``MAX_JSON_DEPTH``."""
    depth = text_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise JSONDepthError(_message(where, depth))


def loads(data: bytes | bytearray | memoryview | str, where: str) -> Any:
    """``json.loads`` after the depth check (``JSONDepthError``; bad JSON is ``json``'s ``ValueError``)."""
    check_text(data, where)
    return json.loads(data if isinstance(data, str) else bytes(data))


def check_value(value: Any, where: str) -> None:
    """Raise ``JSONDepthError`` if the Python value (dicts and lists) nests deeper than ``MAX_JSON_DEPTH``.

    Iterative, and it stops at the first level past the limit, so a cycle or a 10^6-deep list costs
    no more than ``MAX_JSON_DEPTH`` levels of work.
    """
    level = [value] if isinstance(value, (Mapping, list, tuple)) else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise JSONDepthError(_message(where, f"more than {MAX_JSON_DEPTH}"))
        level = [child for node in level for child in _children(node)]


_NESTED = (Mapping, list, tuple)
_CONTAINERS = frozenset({dict, list, tuple})
_SCALARS = frozenset({str, int, float, bool, type(None)})  # never nested: no isinstance of an ABC for them


def _children(node: Any) -> list[Any]:
    values = node.values() if isinstance(node, Mapping) else node if isinstance(node, (list, tuple)) else ()
    return [v for v in values if type(v) in _CONTAINERS or (type(v) not in _SCALARS and isinstance(v, _NESTED))]


def _message(where: str, depth: int | str) -> str:
    return f"{where}: JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} levels are allowed"
