"""Output for people (aligned tables, short summaries) and for machines (JSON)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click

from registry.actor import describe as describe_actor


# C0 and C1 controls (U+009B is ESC [ to a terminal), line and paragraph separators, bidirectional overrides
# and isolates (they reorder what follows them on the line)
_CONTROL = ({c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160))}
            | {c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
            | {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def cell(value: Any) -> str:
    """``value`` as one table cell: control and bidirectional formatting characters escaped (a reason with
    a newline broke the table across lines, an escape sequence could move the terminal's cursor, and a
    right-to-left override reorder the rest of the line)."""
    return "" if value is None else str(value).translate(_CONTROL)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Iterable[int] = ()) -> str:
    """Format rows as a plain table with a header line; columns in ``right`` are right-aligned."""
    cells = [[str(h) for h in headers]] + [[cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    right = set(right)
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """Format ``label: value`` lines with the values aligned."""
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0) + 1
    pad = "\n" + " " * (width + 1)  # (a value's further lines, a description's, under its first)
    return "\n".join(f"{k + ':':<{width}} {pad.join(cell(line) for line in str(v).splitlines() or [''])}"
                     for k, v in pairs)


def to_jsonable(obj: Any) -> Any:
    """Turn API objects (``to_dict()``, dataclasses, datetimes) into plain JSON values."""
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [to_jsonable(v) for v in obj]
        return sorted(items, key=str) if isinstance(obj, (set, frozenset)) else items
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    return obj


def echo_json(obj: Any, *, lines: bool = False) -> None:
    """Print one JSON document (indented), or one compact line with ``lines=True``."""
    if lines:
        click.echo(json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":")))
    else:
        click.echo(json.dumps(to_jsonable(obj), indent=2, sort_keys=True))


def when(value: Any) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS`` (UTC), whatever form it came in."""
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def size(nbytes: int | None) -> str:
    """A byte count for people: ``812 B``, ``17.4 KiB``, ``3.2 MiB``."""
    if nbytes is None:
        return ""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - unreachable


def compact(value: Any, limit: int = 60) -> str:
    """A short one-line JSON rendering of a value (metadata in tables)."""
    if value in (None, {}, []):
        return ""
    if isinstance(value, Mapping):
        text = ", ".join(f"{k}={_scalar(v)}" for k, v in value.items())
    else:
        text = json.dumps(to_jsonable(value), sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"))


def event_summary(event: Any) -> str:
    """One line on what an event says, by type."""
    p = event.payload or {}
    if event.type == "VersionRecorded":
        meta = compact(p.get("metadata"), 40)
        text = f"version {p.get('version')}, {size(p.get('tensor_bytes'))}"
        return f"{text}, {meta}" if meta else text
    if event.type == "SpecRecorded":
        return f"spec {str(p.get('spec_digest', ''))[:12]}"
    if event.type == "AliasSet":
        return f"{p.get('alias')} -> {p.get('version')}"
    if event.type == "AliasRemoved":
        return f"{p.get('alias')} removed"
    if event.type == "TagsSet":
        return f"version {p.get('version')}: {compact(p.get('tags'), 40)}"
    if event.type == "TagsRemoved":
        return f"version {p.get('version')}: removed {', '.join(map(str, p.get('keys') or []))}"
    if event.type == "DescriptionSet":
        what = "model" if p.get("version") is None else f"version {p.get('version')}"
        return f"{what}: {compact(p.get('text'), 40) or '(cleared)'}"
    if event.type in ("StorageBound", "StorageMoved"):
        return f"storage {p.get('how', 'moved')}: {p.get('url')}"
    if event.type in ("VersionDeleted", "ModelDeleted"):
        which = f"version {p.get('version')}" if event.type == "VersionDeleted" else f"versions {p.get('versions')}"
        return f"{which} deleted: {p.get('reason')}"
    if event.type == "VersionRestored":
        return f"version {p.get('version')} restored"
    return compact(p, 50)


EVENT_HEADERS = ("POSITION", "STREAM", "SEQ", "TYPE", "TIME (UTC)", "ACTOR", "SUMMARY")


def event_row(event: Any) -> tuple:
    """The table row of one event (see ``EVENT_HEADERS``)."""
    return (
        event.position,
        event.stream,
        event.stream_version,
        event.type,
        when(event.timestamp),
        describe_actor(getattr(event, "actor", None)),
        event_summary(event),
    )
