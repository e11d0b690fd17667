"""What each command prints for people: tables and reports built from API objects."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from registry.actor import describe as describe_actor
from registry.actor import details as actor_details

from rlreg.output import compact, event_summary, fields, size, table, to_jsonable, when


def aliases_text(aliases: Any) -> str:
    """Aliases as ``best=3, prod=2`` (a mapping) or ``best, prod`` (a list)."""
    if not aliases:
        return ""
    if isinstance(aliases, Mapping):
        return ", ".join(f"{k}={v}" for k, v in sorted(aliases.items()))
    return ", ".join(sorted(aliases))


def models_table(infos: Iterable[Any]) -> str:
    """``rlreg models``."""
    rows = [
        (i.name, i.versions if isinstance(i.versions, int) else len(i.versions), i.latest_version,
         aliases_text(i.aliases), when(i.updated_at))
        for i in infos
    ]
    if not rows:
        return "no models yet (rlreg demo records one)"
    return table(("NAME", "VERSIONS", "LATEST", "ALIASES", "UPDATED (UTC)"), rows, right=(1, 2))


def versions_table(versions: Iterable[Any], about: str | None = None) -> str:
    """``rlreg versions NAME`` (after the model's description, if it has one)."""
    versions = list(versions)
    rows = [
        (v.version, when(v.created_at), aliases_text(v.aliases), size(v.tensor_bytes),
         short_digest(v.spec_digest), compact(getattr(v, "tags", None), 40), compact(v.metadata),
         _short(getattr(v, "description", None)))
        for v in versions
    ]
    headers = ("VERSION", "CREATED (UTC)", "ALIASES", "TENSORS", "SPEC", "TAGS", "METADATA", "DESCRIPTION")
    if any(getattr(v, "deleted", None) for v in versions):  # rlreg versions --all
        rows = [(*row, deleted_text(v.deleted)) for row, v in zip(rows, versions)]
        headers = (*headers, "DELETED")
    text = table(headers, rows, right=(0, 3)) if rows else "no versions match"
    return f"{about}\n\n{text}" if about else text


def _short(text: str | None, limit: int = 40) -> str:
    """The first line of ``text``, cut to ``limit`` characters (with "…" when anything was left out)."""
    if not text:
        return ""
    line = text.splitlines()[0]
    return line[: limit - 1] + "…" if len(line) > limit or line != text else line


def deleted_text(deleted: Any) -> str:
    """``deleted 2026-12-02 17:01:02: why`` for a deleted version, ``""`` for a live one."""
    if not deleted:
        return ""
    reason = deleted.reason if len(deleted.reason) <= 60 else deleted.reason[:59] + "…"
    return f"deleted {when(deleted.deleted_at)}: {reason}"


def event_line(event: Any) -> str:
    """One event as a fixed-width line (``events --follow``, where a table cannot be aligned)."""
    return (f"{event.position:>8}  {event.stream:<24} {event.stream_version:>4}  {event.type:<16} "
            f"{when(event.timestamp)}  {describe_actor(event.actor):<20} {event_summary(event)}")


def describe_space(space: Any) -> str:
    """A space dict (``gym_space_to_dict``) in one short line."""
    if not isinstance(space, Mapping):
        return str(space)
    kind = str(space.get("space") or space.get("type") or "").lower()
    if kind == "box":
        return f"Box(shape={tuple(space.get('shape', ()))}, dtype={_dtype_name(space.get('dtype'))})"
    if kind == "discrete":
        start = space.get("start", 0)
        return f"Discrete({space.get('n')})" + (f" start={start}" if start else "")
    if kind in ("dict", "tuple") and "spaces" in space:
        inner = space["spaces"]
        parts = inner.items() if isinstance(inner, Mapping) else enumerate(inner)
        return f"{kind.title()}(" + ", ".join(f"{k}: {describe_space(v)}" for k, v in parts) + ")"
    return compact(space, 80)


_DTYPE_KINDS = {"f": "float", "i": "int", "u": "uint", "c": "complex"}


def _dtype_name(dtype: Any) -> str:
    """numpy's name of a dtype string such as ``'<f4'`` (``float32``), without importing numpy."""
    text = str(dtype)
    body = text.lstrip("<>|=")
    if body == "b1":
        return "bool"
    if len(body) >= 2 and body[0] in _DTYPE_KINDS and body[1:].isdigit():
        return f"{_DTYPE_KINDS[body[0]]}{8 * int(body[1:])}"
    return text  # already a name ("float32"), or one this line need not spell


def _class_name(value: Any) -> str:
    return value if isinstance(value, str) else compact(value, 80)


def spec_lines(spec: Mapping, indent: str = "  ") -> list[str]:
    """The parts of a spec dict people look for: classes, spaces, model config."""
    body = {**spec, **(spec.get("module_config") or {})}  # RLModuleSpec.to_dict nests the config
    modules = body.get("module_specs") or body.get("modules")
    if isinstance(modules, Mapping):
        kind = _class_name(body.get("multi_rl_module_class") or body.get("module_class"))
        lines = [f"{indent}multi-module: {kind}"]
        for module_id, sub in modules.items():
            lines.append(f"{indent}module {module_id}:")
            lines.extend(spec_lines(sub, indent + "  "))
        return lines
    return [indent + line for line in fields(_module_pairs(body)).splitlines()]


def _module_pairs(body: Mapping) -> list[tuple[str, Any]]:
    """``(label, text)`` of one module's spec: classes, spaces, model config (empty ones left out)."""
    pairs = [
        ("module class", _class_name(body.get("module_class"))),
        ("catalog class", _class_name(body.get("catalog_class") or body.get("catalog_class_path"))),
        ("observation space", describe_space(body.get("observation_space"))),
        ("action space", describe_space(body.get("action_space"))),
        ("model config", json.dumps(to_jsonable(body.get("model_config_dict", body.get("model_config"))),
                                    sort_keys=True)),
        ("inference only", body.get("inference_only")),
        ("load state path", body.get("load_state_path")),
    ]
    return [(k, v) for k, v in pairs if v not in (None, "")]


def spec_pairs(spec: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    """``spec_lines`` as ``(label, text)`` pairs; a multi-module's modules prefixed ``module ID:``."""
    body = {**spec, **(spec.get("module_config") or {})}
    modules = body.get("module_specs") or body.get("modules")
    if not isinstance(modules, Mapping):
        return [(prefix + k, v) for k, v in _module_pairs(body)]
    pairs = [(prefix + "multi-module", _class_name(body.get("multi_rl_module_class") or body.get("module_class")))]
    for module_id, sub in modules.items():
        pairs += spec_pairs(sub, f"{prefix}module {module_id}: ")
    return pairs


def short_digest(value: Any, n: int = 12) -> str:
    """The first ``n`` hex digits of a digest, without its ``blake3:`` scheme."""
    return str(value or "").rpartition(":")[2][:n]


def tensors_table(manifest: Mapping) -> str:
    """The manifest's tensors: name, dtype, shape, bytes, content address."""
    rows = [
        (name, t.get("dtype"), "x".join(map(str, t.get("shape", []))) or "scalar", t.get("nbytes"),
         short_digest(t.get("digest")))
        for name, t in sorted(manifest.get("tensors", {}).items())
    ]
    return table(("TENSOR", "DTYPE", "SHAPE", "BYTES", "DIGEST"), rows, right=(3,))


def version_report(mv: Any, spec: Mapping, manifest: Mapping, about: str | None = None) -> str:
    """``rlreg show``: the version, its spec and its tensors."""
    head = fields([
        ("model", f"{mv.name} ({about})" if about else mv.name),
        ("version", mv.version),
        ("created", when(mv.created_at) + " UTC"),
        ("aliases", aliases_text(mv.aliases) or "-"),
        ("tensor bytes", f"{mv.tensor_bytes} ({size(mv.tensor_bytes)})"),
        ("spec digest", mv.spec_digest),
        ("position", mv.position),
        ("recorded by", actor_details(mv.actor)),
        ("metadata", json.dumps(to_jsonable(mv.metadata), sort_keys=True) if mv.metadata else "-"),
        ("tags", compact(getattr(mv, "tags", None), 200) or "-"),
        ("description", getattr(mv, "description", None) or "-"),
    ])
    return "\n".join([head, "spec:", *spec_lines(spec), "", tensors_table(manifest)])


def verify_summary(report: Any) -> dict:
    """``Registry.verify()``'s report as ``{"ok", "versions", "checked", "damaged", "missing"}``.

    ``damaged`` maps an object's digest to what is wrong with it; ``missing`` maps ``name/version``
    to the digests of the objects it needs that are not in the store.
    """
    data = to_jsonable(report)
    stored = data.get("storage") or {}
    damaged = stored.get("damaged") or {}
    if not isinstance(damaged, Mapping):
        damaged = {str(d): "damaged" for d in damaged}
    return {
        **{k: v for k, v in data.items() if k != "storage"},
        "ok": bool(data.get("ok")) and not damaged,
        "checked": stored.get("checked"),
        "damaged": dict(damaged),
        "missing": dict(data.get("missing") or {}),
        "damaged_versions": dict(data.get("damaged_versions") or {}),
        "quarantined": list(stored.get("quarantined") or []),
    }


def verify_text(summary: Mapping) -> str:
    """``rlreg verify`` for people."""
    damaged, missing = summary["damaged"], summary["missing"]
    state = "ok" if summary["ok"] else f"{len(damaged)} damaged, {len(missing)} versions with missing objects"
    lines = [f"checked {summary['checked']} objects of {summary['versions']} versions: {state}"]
    lines += [f"  damaged: {why}" for _, why in sorted(damaged.items())]
    for version, tensors in sorted(summary["damaged_versions"].items()):
        lines.append(f"  breaks {version}: {', '.join(sorted(tensors))}")
    lines += [f"  moved aside (the next snapshot rewrites it): {d}" for d in summary["quarantined"]]
    lines += [f"  missing {version}: {', '.join(ds)}" for version, ds in sorted(missing.items())]
    return "\n".join(lines)


def schema_text(status: Any, where: str) -> str:
    """``rlreg db current|upgrade``: the revisions and what to do about them."""
    if status.up_to_date:
        state = "up to date"
    elif not status.known:
        state = "newer than this rlreg: upgrade the rlreg package"
    elif status.empty:
        state = "empty: the schema is created on first use (or by `rlreg db upgrade`)"
    else:
        state = "out of date: run `rlreg db upgrade`"
    return fields([("database", where), ("current", status.current or "-"), ("head", status.head),
                   ("status", state)])


def storage_text(url: str, changes: Iterable[Any]) -> str:
    """``rlreg storage show``: the URL in use, then each binding or move (or holder forgotten) with who and when."""
    lines = [f"storage: {url}"]
    for e in changes:
        if e.type == "StorageHolderForgotten":
            what = f"forgot the holder {e.payload.get('holder')} of"
        elif e.type == "StorageMoved":
            what = f"moved from {e.payload.get('previous')} ->"
        else:
            what = f"{e.payload.get('how', 'bound')} ->"
        lines.append(f"  {when(e.timestamp)} UTC  {what} {e.payload.get('url')}  by {describe_actor(e.actor)}")
    if len(lines) == 1:
        lines.append("  (not recorded yet: the first client that names a storage URL records it)")
    return "\n".join(lines)


def holders_text(url: str, found: Iterable[Mapping[str, Any]], collecting: Mapping[str, Any] | None = None) -> str:
    """``rlreg storage holders``: one line a registry recorded in the storage, this one marked; then the
    gcs running there (their live leases)."""
    rows = []
    for h in found:
        actor = h.get("actor") if isinstance(h.get("actor"), Mapping) else None
        rows.append(("*" if h.get("this") else "", h["holder"],
                     f"(unreadable: {h['damaged']})" if "damaged" in h else h.get("database", "?"),
                     f"{when(h['since'])} UTC" if h.get("since") else "", describe_actor(actor) if actor else ""))
    running = [f"  gc of {h} running, or killed (its lease, renewed {when(t)} UTC, counts until 10 minutes after)"
               for h, t in (collecting or {}).items()]
    if not rows:
        return "\n".join([f"storage: {url}", "  (no holder recorded yet: a registry records itself at its first "
                          "snapshot)", *running])
    mine, others = any(r[0] for r in rows), not all(r[0] for r in rows)
    if mine:
        note = "  (* this registry; another holds it too: gc refuses this storage)" if others else "  (* this registry)"
    else:  # (a registry that never stored anything there, or whose record was forgotten)
        note = ("  (this registry is not recorded here: it records itself at its next snapshot, import or restore; "
                "until then another registry's gc may delete objects its versions use, and its own gc is refused)")
    return "\n".join([f"storage: {url}", table(("", "HOLDER", "DATABASE", "SINCE", "BY"), rows), note, *running])
