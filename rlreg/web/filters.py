"""Jinja filters: the command line's formatting (``rlreg.output``, ``rlreg.show``) for the pages."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from registry.query import nameable_key
from rlreg.output import compact, size, to_jsonable, when
from rlreg.show import aliases_text, short_digest
from rlreg.web.charts import is_number


def actor_text(actor: Any) -> str:
    """Who: the actor's name if it has one, else ``user@host``; empty when unknown."""
    if not actor:
        return ""
    if isinstance(actor, Mapping):
        named = actor.get("actor") or actor.get("name")
        if named:
            return str(named)
        user, host = actor.get("user"), actor.get("host")
        return f"{user}@{host}" if user and host else compact(actor, 40)
    return str(actor)


def pretty_json(value: Any) -> str:
    """Indented JSON (escaped by the template like any text)."""
    return json.dumps(to_jsonable(value), indent=2, sort_keys=True)


def cell(value: Any) -> str:
    """A metadata value in a table cell: numbers to 6 significant digits, strings as they are."""
    if value is None:
        return ""
    if is_number(value) and isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return compact(value, 40) or json.dumps(to_jsonable(value))


def shape(value: Any) -> str:
    """A tensor shape as ``64x8`` (``scalar`` for ``[]``)."""
    return "x".join(map(str, value or [])) or "scalar"


def without_tensors(state: Any) -> Any:
    """The non-tensor leaves of a stored state (the ``{"$tensor": …}`` marks of tensors left out)."""
    from rlmodule.state import TENSOR_MARK  # here: rlmodule imports torch, which the other pages never need

    if isinstance(state, Mapping):
        kept = {k: without_tensors(v) for k, v in state.items() if not (isinstance(v, Mapping) and TENSOR_MARK in v)}
        return {k: v for k, v in kept.items() if v != {}}
    if isinstance(state, list):
        return [without_tensors(v) for v in state]
    return state


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def metadata_field(key: str) -> str | None:
    """The ``where`` language's field for a metadata key: ``metadata.k``, or ``metadata."a b"`` when quoted;
    ``None`` for a key the language cannot name (a ``"``, a backslash or a control character: SQLite's
    JSON paths cannot hold them), whose column then has no sort link (it led to a 400)."""
    if _IDENTIFIER.fullmatch(key):
        return f"metadata.{key}"
    if not nameable_key(key):
        return None
    return "metadata." + json.dumps(key, ensure_ascii=False)


FILTERS = {
    "when": when, "size": size, "compact": compact, "aliases_text": aliases_text, "short_digest": short_digest,
    "actor_text": actor_text, "pretty_json": pretty_json, "cell": cell, "shape": shape,
    "without_tensors": without_tensors, "metadata_field": metadata_field,
}
