"""Retention policies: which versions of a model to keep, applied after each snapshot and by ``gc``.

Event types (stream = model name):

- ``RetentionSet``     ``{"keep_last": N | null, "keep_every": N | null,
                         "keep_best": {"key": str, "count": N, "mode": "max" | "min"} | null}``
- ``RetentionCleared`` ``{}``

A policy keeps the union of: the ``keep_last`` newest live versions, the versions whose number is a
multiple of ``keep_every``, the ``keep_best`` versions with the highest (``"max"``) or lowest
(``"min"``) number under that metadata key, every aliased version and the newest version. Applying it
appends one ``VersionDeleted`` (reason ``retention: <policy>``) per other live version, in one append
at the stream version it read: a concurrent writer makes it conflict and start over from what
committed, so no version is deleted twice and none that the policy keeps is deleted. Applying twice
deletes nothing more (the newest, best and multiples among the kept versions are those same versions).

While no live version has a number under ``keep_best``'s key (a mistyped key, or a metric recorded
only from now on), the policy deletes nothing (``keep_last`` and ``keep_every`` included) and warns
(``errors.RetentionWarning``): ranking nothing, it would delete the versions it was set to keep.

A policy belongs to one life of its model: ``ModelDeleted`` ends it (its projection removes the
policy, ``registry.lifecycle``), so a model made again under the same name keeps every version until
a policy is set for it.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry import errors, lifecycle
from registry.eventstore import Event, NewEvent
from registry.names import MAX_INTEGER, validate_name
from registry.schema import aliases, events, retention, versions

log = logging.getLogger(__name__)

RETENTION_SET = "RetentionSet"
RETENTION_CLEARED = "RetentionCleared"
EVENT_TYPES = (RETENTION_SET, RETENTION_CLEARED)
MODES = ("max", "min")


# --- policies ---------------------------------------------------------------------------------


def _count(name: str, what: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INTEGER:
        raise errors.InvalidEventError(
            f"retention of model {name!r}: {what} must be an integer from 1 to {MAX_INTEGER} (2^63 - 1), got {value!r}")
    return value


def _best(name: str, keep_best: Any) -> dict[str, Any] | None:
    if keep_best is None:
        return None
    if isinstance(keep_best, Mapping):
        keep_best = (keep_best.get("key"), keep_best.get("count"), keep_best.get("mode", "max"))
    if isinstance(keep_best, str) or not isinstance(keep_best, Sequence) or len(keep_best) not in (2, 3):
        raise errors.InvalidEventError(
            f"retention of model {name!r}: keep_best must be (metadata key, count[, 'max' or 'min']), got {keep_best!r}"
        )
    key, count, mode = (*keep_best, "max")[:3]
    if not isinstance(key, str) or not key or "\0" in key:
        raise errors.InvalidEventError(f"retention of model {name!r}: keep_best's metadata key must be a non-empty text "
                                       "without NUL (\\0)")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:  # (bytes not UTF-8 from argv: surrogates, which no metadata key can match)
        raise errors.InvalidEventError(f"retention of model {name!r}: keep_best's metadata key {key!r} holds bytes "
                                       "that are not UTF-8 (shown as \\udcXX): give it as UTF-8 text") from None
    if mode not in MODES:
        raise errors.InvalidEventError(f"retention of model {name!r}: keep_best's mode must be 'max' or 'min', got {mode!r}")
    return {"key": key, "count": _count(name, "keep_best's count", count), "mode": mode}


def make_policy(name: str, keep_last: Any = None, keep_every: Any = None, keep_best: Any = None) -> dict[str, Any]:
    """The checked policy (the ``RetentionSet`` payload); ``InvalidEventError`` naming what is wrong."""
    policy = {"keep_last": _count(name, "keep_last", keep_last), "keep_every": _count(name, "keep_every", keep_every),
              "keep_best": _best(name, keep_best)}
    if all(v is None for v in policy.values()):
        raise errors.InvalidEventError(
            f"retention of model {name!r}: give at least one of keep_last, keep_every, keep_best "
            "(clear_retention removes a policy)"
        )
    return policy


def describe(policy: Mapping[str, Any]) -> str:
    """``keep_last=20, keep_every=100, keep_best=mean_return:5:max``."""
    parts = [f"{k}={policy[k]}" for k in ("keep_last", "keep_every") if policy.get(k) is not None]
    best = policy.get("keep_best")
    if best:
        parts.append(f"keep_best={best['key']}:{best['count']}:{best['mode']}")
    return ", ".join(parts)


def _metric(metadata: Any, key: str) -> float | None:
    """The finite number under ``key`` in a version's metadata (what ``keep_best`` ranks), else ``None``."""
    value = metadata.get(key) if isinstance(metadata, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _unranked(policy: Mapping[str, Any], metadata: Iterable[Any]) -> bool:
    """Whether ``policy`` ranks by a ``keep_best`` key that none of these versions' metadata has a number under."""
    best = policy.get("keep_best")
    return bool(best) and all(_metric(meta, best["key"]) is None for meta in metadata)


def _unranked_message(name: str, policy: Mapping[str, Any]) -> str:
    """What an ``_unranked`` policy tells its user: nothing is deleted, and why."""
    others = " (keep_last and keep_every wait with it)" if policy.get("keep_last") or policy.get("keep_every") else ""
    return (f"retention of {name}: no version has a number under metadata key {policy['keep_best']['key']!r} "
            f"(keep_best), so the policy deletes nothing until one has{others}; check the key, or record it "
            "in the snapshots' metadata")


def kept(policy: Mapping[str, Any], live: Sequence[tuple[int, Any]], aliased: set[int]) -> set[int]:
    """The versions ``policy`` keeps of ``live`` (``(version, metadata)`` pairs, ascending)."""
    numbers = [v for v, _ in live]
    keep = set(aliased) | set(numbers[-1:])
    if policy.get("keep_last"):
        keep |= set(numbers[-policy["keep_last"]:])
    if policy.get("keep_every"):
        keep |= {v for v in numbers if v % policy["keep_every"] == 0}
    best = policy.get("keep_best")
    if best:
        scored = [(m, v) for v, meta in live if (m := _metric(meta, best["key"])) is not None]
        sign = -1.0 if best["mode"] == "max" else 1.0
        scored.sort(key=lambda mv: (sign * mv[0], -mv[1]))  # ties: the newer version
        keep |= {v for _, v in scored[: best["count"]]}
    return keep


# --- projection -------------------------------------------------------------------------------


def _apply_set(conn: Connection, event: Event, model: Any) -> None:
    conn.execute(retention.delete().where(retention.c.name == event.stream))
    conn.execute(retention.insert().values(name=event.stream, policy=dict(event.payload), position=event.position))


def _apply_cleared(conn: Connection, event: Event, model: Any) -> None:
    gone = conn.execute(retention.delete().where(retention.c.name == event.stream))
    if gone.rowcount != 1 and not _ended_by_deletion(conn, event):
        raise errors.NotFoundError(f"model {event.stream!r} has no retention policy to clear")


_LAST_POLICY_EVENT = (
    sa.select(events.c.type)
    .where(events.c.stream == sa.bindparam("b_stream"), events.c.stream_version < sa.bindparam("b_before"),
           events.c.type.in_([RETENTION_SET, RETENTION_CLEARED, lifecycle.MODEL_DELETED]))
    .order_by(events.c.stream_version.desc()).limit(1)
)


def _ended_by_deletion(conn: Connection, event: Event) -> bool:
    """Whether the policy ``event`` clears was ended by the model's deletion before it.

    Logs written before ``ModelDeleted`` ended policies can hold ``[RetentionSet, ModelDeleted, ...,
    RetentionCleared]`` (the policy then outlived the deletion, and was cleared on the model made
    again): replayed today, that clear finds no policy, and must clear nothing rather than fail the
    rebuild. ``clear_policy`` refuses a model without a policy before it appends, so only such a log
    (or an append by hand) gets here.
    """
    last = conn.execute(_LAST_POLICY_EVENT, {"b_stream": event.stream, "b_before": event.stream_version}).scalar()
    return last == lifecycle.MODEL_DELETED


def handlers() -> dict[str, Any]:
    """The projector's handlers of the retention events."""
    return {RETENTION_SET: _apply_set, RETENTION_CLEARED: _apply_cleared}


_POLICY = sa.select(retention.c.policy).where(retention.c.name == sa.bindparam("name"))  # built once


def policy_of(conn: Connection, name: str) -> dict[str, Any] | None:
    """``name``'s retention policy, or ``None``."""
    return conn.execute(_POLICY, {"name": name}).scalar()


def models_with_policies(conn: Connection) -> list[str]:
    """The names of the models that have a retention policy."""
    return list(conn.execute(sa.select(retention.c.name).order_by(retention.c.name)).scalars())


# --- the Registry's calls -----------------------------------------------------------------------


def set_policy(reg: Any, name: str, **policy: Any) -> Event:
    """Append ``RetentionSet`` for a live model, then apply it."""
    validate_name(name)
    payload = make_policy(name, **policy)

    def make(latest: int, last_digest: str | None) -> list[NewEvent]:
        with reg._read(f"reading model {name!r}") as conn:
            lifecycle.live_model(conn, name)
        return [NewEvent(RETENTION_SET, payload)]

    event = reg._append_with_retry(name, make)[-1]
    apply_after_commit(reg, name)  # (recorded: a failure to apply it now is not the caller's to retry)
    return event


def clear_policy(reg: Any, name: str) -> Event:
    """Append ``RetentionCleared`` (``NotFoundError`` when ``name`` has no policy)."""
    validate_name(name)

    def make(latest: int, last_digest: str | None) -> list[NewEvent]:
        with reg._read(f"reading model {name!r}") as conn:
            lifecycle.live_model(conn, name)
            if policy_of(conn, name) is None:
                raise errors.NotFoundError(f"model {name!r} has no retention policy to clear")
        return [NewEvent(RETENTION_CLEARED, {})]

    return reg._append_with_retry(name, make)[-1]


def get_policy(reg: Any, name: str) -> dict[str, Any] | None:
    """``name``'s policy (``None`` when it has none)."""
    validate_name(name)
    with reg._read(f"reading model {name!r}") as conn:
        lifecycle.live_model(conn, name)
        return policy_of(conn, name)


def _deletions(conn: Connection, name: str) -> list[NewEvent]:
    policy = policy_of(conn, name)
    if policy is None or lifecycle.model_deletion(conn, name) is not None:
        return []
    live = [(r.version, r.metadata) for r in conn.execute(lifecycle.live_versions(conn, name).order_by(versions.c.version))]
    aliased = set(conn.execute(sa.select(aliases.c.version).where(aliases.c.name == name)).scalars())
    if live and _unranked(policy, (meta for _, meta in live)):
        # A key no version has (mistyped, or recorded only from now on): ranking nothing, keep_best would
        # keep none, and the policy would delete every version it keeps by its key. Wait for one.
        warnings.warn(_unranked_message(name, policy), errors.RetentionWarning, stacklevel=2)
        return []
    keep = kept(policy, live, aliased | _restored_since_set(conn, name))
    reason = f"retention: {describe(policy)}"
    return [NewEvent(lifecycle.VERSION_DELETED, {"version": v, "reason": reason}) for v, _ in live if v not in keep]


# The versions of a model restored after its policy was set: a restore is deliberate, and the policy that
# deleted the version would delete it again at the next snapshot or gc (and gc, with a short grace, its
# objects too). Setting the policy again applies it to them. The projection keeps them on the policy's row
# (``VersionRestored`` adds one, ``RetentionSet`` starts empty): what a replay of the log makes.
_RESTORED = sa.select(retention.c.restored).where(retention.c.name == sa.bindparam("name"))


def _restored_since_set(conn: Connection, name: str) -> set[int]:
    return set(conn.execute(_RESTORED, {"name": name}).scalar() or ())


def pending(conn: Connection, name: str) -> list[int]:
    """The live versions of ``name`` its policy does not keep: what ``apply`` would delete now (``gc --dry-run``)."""
    return [e.payload["version"] for e in _deletions(conn, name)]


def apply_after_commit(reg: Any, name: str) -> list[int]:
    """``apply`` after a snapshot of ``name`` committed: a database lost meanwhile is logged, not raised.

    The version is recorded; raising would tell its caller it was not, and a caller that tries again
    records it twice. The policy is applied by the next snapshot, ``rlreg gc`` or ``apply_retention``.
    """
    try:
        return apply(reg, name)
    except (errors.DatabaseUnavailableError, errors.ClosedError) as exc:  # (closed: by another thread meanwhile)
        log.warning("retention of model %r left for its next snapshot or gc (the version is recorded): %s", name, exc)
        return []


def apply(reg: Any, name: str) -> list[int]:
    """Delete the live versions of ``name`` its policy does not keep; returns their numbers.

    Never raises ``ConflictError``: if writers keep winning, what is left is deleted next time.
    """

    def make(latest: int, last_digest: str | None) -> list[NewEvent]:
        with reg._read(f"reading model {name!r}") as conn:
            return _deletions(conn, name)

    try:
        return [e.payload["version"] for e in reg._append_with_retry(name, make)]
    except errors.ConflictError as exc:
        log.warning("retention of model %r left for its next snapshot or gc: %s", name, exc)
        return []
