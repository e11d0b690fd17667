"""What the pages and the JSON API read from the registry: one function per document, shared by both.

The JSON documents have the shapes of the command line's ``--json`` (``rlreg.output.to_jsonable`` of
the same API objects).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from registry import NotFoundError, Registry
from registry.names import int_of_digits

from rlreg.web.errors import BadParameterError
from rlreg.web.refs import PathRef

ALIAS_EVENTS = ("AliasSet", "AliasRemoved")


def resolve(reg: Registry, ref: PathRef) -> Any:
    """The ``ModelVersion`` a path names (the latest for a bare name)."""
    return reg.version(ref.name, ref.version, alias=ref.alias)


def version_document(reg: Registry, ref: PathRef) -> dict[str, Any]:
    """``rlreg show --json``'s document: ``{"version", "spec", "tensors"}`` (plus ``"state"``)."""
    mv = resolve(reg, ref)
    manifest = reg.manifest(ref.name, mv.version)
    return {"version": mv, "spec": reg.spec(ref.name, mv.version), "tensors": manifest.get("tensors", {}),
            "state": reg.state(ref.name, mv.version)}


def model_info(reg: Registry, name: str) -> Any:
    """The ``ModelInfo`` of one model (``NotFoundError`` naming it when there is none)."""
    reg.aliases(name)  # validates the name; NotFoundError (with the registry's wording) when unknown
    for info in reg.models():
        if info.name == name:
            return info
    raise NotFoundError(f"no model named {name!r}")


def alias_history(reg: Registry, name: str) -> list[Any]:
    """The ``AliasSet``/``AliasRemoved`` events of a model, newest first."""
    return list(reversed(reg.event_store.read_stream(name, types=ALIAS_EVENTS)))


def tensor(reg: Registry, ref: PathRef, tensor_name: str) -> tuple[Any, Any, dict]:
    """``(ModelVersion, tensor, manifest entry)``: one tensor of a version, read and verified."""
    mv = resolve(reg, ref)
    got = reg.tensors(ref.name, mv.version, [tensor_name])
    return mv, got[tensor_name], reg.manifest(ref.name, mv.version)["tensors"][tensor_name]


# --- the event log, newest first, paged by position ---------------------------------------------


@dataclass
class EventPage:
    """Events at or below ``before``, newest first, matching the filters; ``older`` pages on."""

    events: list[Any]
    head: int
    before: int
    older: int | None  # the ``before`` of the next (older) page, None at the log's start
    scanned_to: int  # the lowest position read


def _backwards(reg: Registry, top: int, chunk: int) -> Iterator[Any]:
    """Events at or below ``top``, newest first, read ``chunk`` positions at a time (positions are dense)."""
    while top > 0:
        after = max(0, top - chunk)
        yield from reversed(reg.events(after=after, limit=top - after))
        top = after


def event_page(reg: Registry, *, before: int | None = None, limit: int = 50, stream: str | None = None,
               types: frozenset[str] = frozenset(), scan_limit: int = 20_000) -> EventPage:
    """One page of the global log, newest first, optionally only one model's stream or some types."""
    head = reg.head()
    top = head if before is None else min(before, head)
    found: list[Any] = []
    lowest = top + 1
    chunk = limit + 1 if stream is None and not types else max(limit * 4, 200)
    for event in _backwards(reg, top, chunk=chunk):
        lowest = event.position
        if (stream is None or event.stream == stream) and (not types or event.type in types):
            found.append(event)
        if len(found) == limit + 1 or top - lowest >= scan_limit:
            break
    more = len(found) > limit
    found = found[:limit]
    older = (found[-1].position - 1 if more else lowest - 1 if lowest > 1 and top - lowest >= scan_limit else None)
    return EventPage(found, head, top, older if older and older > 0 else None, lowest)


def positive_int(value: str | None, what: str, *, default: int | None = None, maximum: int | None = None) -> int | None:
    """A query parameter that must be a positive integer (``BadParameterError`` naming it otherwise)."""
    if value is None or value == "":
        return default
    if not value.isascii() or not value.isdigit() or int_of_digits(value) < 1:
        raise BadParameterError(f"{what}={value[:40]!r}: expected a positive integer")
    return min(int_of_digits(value), maximum) if maximum else int_of_digits(value)


def non_negative_int(value: str | None, what: str, *, default: int = 0) -> int:
    """A query parameter that must be 0 or a positive integer."""
    if value is None or value == "":
        return default
    if not value.isascii() or not value.isdigit():
        raise BadParameterError(f"{what}={value[:40]!r}: expected 0 or a positive integer")
    return int_of_digits(value)  # (one past 2^63 - 1 when longer: the registry's range check refuses it)
