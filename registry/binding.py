"""The storage location belongs to the registry: its database records the storage URL as events.

Events of the stream ``$registry`` (no model name can start with ``$``):

- ``StorageBound`` ``{"url": normalised URL, "how": "created" | "adopted"}``: the first URL, recorded
  when a new registry is first opened (the URL given, else the default folder), or "adopted" by a
  registry created before storage was recorded, from the first client that names a URL explicitly.
- ``StorageMoved`` ``{"url": new URL, "previous": old URL}``: ``Registry.move_storage`` (``rlreg storage
  move``), recorded only after every object the versions need was found at the new URL.

- ``StorageHolderForgotten`` ``{"url": storage URL, "holder": registry id, "record": its holder record}``:
  ``Registry.forget_storage_holder`` (``rlreg storage forget``) removed another registry's holder record.

A client given no URL uses the recorded one; a client given another URL is refused with
``StorageMismatchError`` before anything is written. URLs are compared normalised (``storage.Location``:
``/a/b/``, ``/a/b`` and ``file:///a/b`` are one location; relative paths are made absolute), so
equivalent spellings are never refused. Endpoints and credentials (``AWS_ENDPOINT_URL``, ...) are per
client and never recorded.

The storage records its registries too (``storage.holders``: ``<url>/holders/<registry id>.json``).
A registry's id is the id of its database's first event. A registry records itself there before it
stores its first object (per client) and when gc runs; gc refuses a storage another registry holds
(``StorageSharedError``): that one's versions may use any object this one no longer does. Two databases
may share a storage by accident: a second database opened without ``--storage`` binds the default
folder, which the default registry holds already (the first such write warns, ``StorageSharedWarning``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from registry import errors
from registry.actor import describe as describe_actor
from registry.eventstore import Event, EventStore, NewEvent

REGISTRY_STREAM = "$registry"
STORAGE_BOUND = "StorageBound"
STORAGE_MOVED = "StorageMoved"
STORAGE_EVENTS = (STORAGE_BOUND, STORAGE_MOVED)
HOLDER_FORGOTTEN = "StorageHolderForgotten"
ATTEMPTS = 5  # a concurrent first open may bind first: re-read and compare

log = logging.getLogger(__name__)


def normalize(url: str) -> str:
    """The one spelling of a storage URL (absolute ``file://`` for paths, no trailing ``/``)."""
    from storage import filesystems  # fsspec only: read commands never import torch

    fs, path = filesystems.filesystem(str(url), {})
    return filesystems.url_of(fs, path)


@dataclass(frozen=True)
class Binding:
    """Where the registry's objects live, and the ``$registry`` stream version that says so."""

    url: str | None
    stream_version: int
    event: Event | None = None


def recorded(events: EventStore, since: Binding | None = None) -> Binding:
    """The storage URL the database records (``url=None`` when it records none yet).

    ``since``: an earlier answer of this function; only the events after it are read (most often none).
    """
    after = 0 if since is None else since.stream_version
    stream = events.read_stream(REGISTRY_STREAM, after=after)
    found = [e for e in stream if e.type in STORAGE_EVENTS]
    version = stream[-1].stream_version if stream else after
    if found:
        return Binding(found[-1].payload["url"], version, found[-1])
    return Binding(None, version) if since is None else Binding(since.url, version, since.event)


def bind(events: EventStore, given: str | None, default: Callable[[], str], *, record: bool, where: str) -> Binding:
    """The storage URL to use, recording it first if the database records none (see the module docstring).

    ``given`` is the URL the client was given explicitly (argument or ``RLREG_STORAGE_URL``);
    ``record=False`` (a read-only open) records nothing unless a URL was given.
    """
    wanted = normalize(given) if given else None
    for _ in range(ATTEMPTS):
        current = recorded(events)
        if current.url is not None:
            if wanted is not None and wanted != current.url:
                raise mismatch(where, current.url, wanted)
            return current
        empty = events.head() == 0
        if not (wanted or (record and empty)):
            return Binding(normalize(default()), current.stream_version)  # legacy: used, not recorded
        url = wanted or normalize(default())
        how = "created" if empty else "adopted"
        try:
            event = events.append(REGISTRY_STREAM, [NewEvent(STORAGE_BOUND, {"url": url, "how": how})],
                                  expected_version=current.stream_version)[0]
        except errors.ConflictError:
            continue  # another client bound it first: compare with theirs
        return Binding(url, event.stream_version, event)
    raise errors.ConflictError(f"{where}: the storage binding kept changing under {ATTEMPTS} attempts")


def mismatch(where: str, recorded_url: str, given: str) -> errors.StorageMismatchError:
    """The refusal of a client given a storage URL other than the recorded one."""
    return errors.StorageMismatchError(
        f"storage mismatch: the registry at {where} keeps its objects at {recorded_url!r}, but this client "
        f"was given {given!r} (--storage or RLREG_STORAGE_URL): drop that setting to use {recorded_url!r}, "
        f"or, if the objects really moved there, run `rlreg storage move {given}`"
    )


def moved_away(where: str, using: str, now: str) -> errors.StorageMismatchError:
    """The refusal of a writer whose storage was moved (or bound) by another client since it opened."""
    return errors.StorageMismatchError(
        f"storage mismatch: the registry at {where} now keeps its objects at {now!r} (recorded since this "
        f"client opened it on {using!r}): open the registry again to write there"
    )


def move_refused(previous: str, url: str, missing: list[str], total: int) -> errors.StorageMoveError:
    """The refusal of a move to a location that lacks objects the versions need."""
    shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    return errors.StorageMoveError(
        f"storage move to {url!r} refused: {len(missing)} of the {total} objects the versions need are not "
        f"there ({shown}); copy {previous!r} to {url!r} first (e.g. `aws s3 sync` or `rsync -a`), then retry"
    )


def record_move(events: EventStore, current: Binding, previous: str, url: str) -> Event:
    """Append ``StorageMoved`` (fails with ``ConflictError`` if the binding changed since ``current``)."""
    payload: dict[str, Any] = {"url": url, "previous": previous}
    return events.append(REGISTRY_STREAM, [NewEvent(STORAGE_MOVED, payload)],
                         expected_version=current.stream_version)[0]


def registry_id(events: EventStore) -> str | None:
    """The registry's id, as its storage's holder records name it: its database's first event's id
    (``None`` while the log is empty). A copy of the database has the same id: give it its own storage."""
    first = events.events(limit=1)
    return str(first[0].id) if first else None


def describe_holder(holder: str, record: dict[str, Any], url: str | None = None) -> str:
    """One holder record, as errors and warnings name it (``url``: the storage it was found in)."""
    if "damaged" in record:
        return f"{holder} (its record is unreadable: {record['damaged']})"
    actor = record.get("actor") if isinstance(record.get("actor"), dict) else None
    copied = record.get("url") not in (None, url) and url is not None
    return (f"{holder} (database {record.get('database', '?')}, since {record.get('since', '?')}, "
            f"by {describe_actor(actor)}"
            + (f"; recorded at {record['url']}: copied here with the objects? if so, `rlreg storage forget "
               f"{holder}`" if copied else "") + ")")


def _listed(others: dict[str, dict[str, Any]], url: str) -> str:
    shown = "; ".join(describe_holder(h, r, url) for h, r in list(others.items())[:3])
    return shown + (f"; and {len(others) - 3} more" if len(others) > 3 else "")


def shared_refusal(where: str, url: str, others: dict[str, dict[str, Any]]) -> errors.StorageSharedError:
    """gc's refusal of a storage that other registries hold too."""
    return errors.StorageSharedError(
        f"gc refused: the storage {url!r} of the registry at {where} is held by {len(others)} other "
        f"registr{'y' if len(others) == 1 else 'ies'} too: {_listed(others, url)}. Their versions may use objects "
        "this registry's no longer do, so no object was deleted. Give each registry a storage of its own "
        "(copy the objects/ folder, then `rlreg storage move URL`), or, if a holder's database is gone for "
        "good, `rlreg storage forget HOLDER` (`rlreg storage holders` lists them)"
    )


def shared_warning(where: str, url: str, others: dict[str, dict[str, Any]]) -> str:
    """The warning of a registry that recorded itself in a storage other registries hold."""
    return (
        f"the registry at {where} now shares its storage {url!r} with {_listed(others, url)}: gc is refused "
        "there from now on (it cannot see the others' versions). Give this registry a storage of its own "
        "(--storage or RLREG_STORAGE_URL when it is created, or `rlreg storage move URL`)"
    )


def collecting_refusal(where: str, url: str, leases: dict[str, dt.datetime]) -> errors.ConflictError:
    """The refusal of a write while another registry's gc deletes objects in the storage (its lease)."""
    from storage.holders import LEASE_SECONDS

    shown = ", ".join(f"{h} (renewed {t.isoformat(timespec='seconds')})" for h, t in list(leases.items())[:3])
    return errors.ConflictError(
        f"the registry at {where} shares its storage {url!r} with another registry whose gc is deleting "
        f"objects there now: {shown}. Nothing was stored or recorded (an object this write would reuse may be "
        f"deleted under it): retry once that gc has ended (a lease not renewed for {LEASE_SECONDS // 60} "
        "minutes lapses), and give this registry a storage of its own"
    )


def public_url(db_url: Any) -> str:
    """A database URL as a storage's holder record names it: the password masked, no query (it may hold one)."""
    from registry import db

    return db.normalize_url(db_url).set(query={}).render_as_string(hide_password=True)


def others(store: Any, me: str | None) -> dict[str, dict[str, Any]]:
    """The holder records of ``store`` other than ``me``'s."""
    from storage import holders

    return {h: r for h, r in holders.holders(store, unread=[me] if me else []).items() if h != me}


def collecting(store: Any, me: str | None) -> dict[str, dt.datetime]:
    """The live gc leases (``storage.holders``) of registries other than ``me`` on ``store``."""
    from storage import holders

    return {h: t for h, t in holders.collecting(store).items() if h != me}


@dataclass(frozen=True)
class Held:
    """What ``hold`` found: whether it wrote the record now, the other holders (read only if it did),
    and the other registries' live gc leases."""

    written: bool
    others: dict[str, dict[str, Any]]
    collecting: dict[str, dt.datetime]


def hold(store: Any, me: str, db_url: Any, actor: dict[str, Any]) -> Held:
    """Record the registry ``me`` (its database at ``db_url``) as a holder of ``store`` unless it is, then
    look for other registries' gc leases (after the record: see ``storage.holders``)."""
    from storage import holders

    since = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    record = {"database": public_url(db_url), "since": since, "actor": actor, "url": store.url}
    written = holders.hold(store, me, record)
    return Held(written, others(store, me) if written else {}, collecting(store, me))


def lease(store: Any, me: str, db_url: Any, actor: dict[str, Any]) -> Any:
    """A gc's lease on ``store`` (a context manager: taken, renewed, removed; ``storage.holders.Lease``)."""
    from storage import holders

    return holders.Lease(store, me, {"database": public_url(db_url), "actor": actor})


def release(store: Any, me: str) -> None:
    """Remove ``me``'s holder record from a storage the registry moved away from (a failure is logged:
    the record left there only makes gc of another registry on that storage refuse, never delete)."""
    from storage import holders
    from storage.errors import StorageError

    try:
        holders.release(store, me)
    except (StorageError, OSError) as exc:
        log.warning("could not remove the holder record %s from %s (%s): remove %s/%s/%s.json by hand "
                    "or with `rlreg storage forget %s` there", me, store.url, exc, store.url, holders.FOLDER,
                    me, me)


def forget(events: EventStore, store: Any, me: str | None, holder: str, where: str) -> Event:
    """Remove another registry's holder record from ``store``, then record ``StorageHolderForgotten`` (a record
    that cannot be removed records nothing)."""
    from storage import holders

    try:
        holders.check_id(holder)
    except ValueError as exc:
        raise errors.InvalidNameError(f"storage forget: {exc}") from None
    if holder == me:
        raise errors.StorageMismatchError(
            f"storage forget: {holder} is the registry at {where} itself (it records itself again at its "
            "next snapshot, import or restore): forget only another registry, whose database is gone for good"
        )
    found = holders.holders(store)
    if holder not in found:
        starting = [h for h in found if h.startswith(holder) and h != me]  # (a unique prefix will do)
        if len(starting) != 1:
            known = ", ".join(sorted(found)) or "none"
            raise errors.NotFoundError(f"storage forget: {store.url!r} records no holder {holder!r}"
                                       + (" (the prefix names several)" if starting else "") + f" (holders: {known})")
        holder = starting[0]
    holders.release(store, holder)
    return events.append(REGISTRY_STREAM, [NewEvent(HOLDER_FORGOTTEN, {
        "url": store.url, "holder": holder, "record": found[holder]})])[0]
