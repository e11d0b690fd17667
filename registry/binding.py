"""The storage location belongs to the registry: its database records the storage URL as events.

Events of the stream ``$registry`` (no model name can start with ``$``):

- ``StorageBound`` ``{"url": normalised URL, "how": "created" | "adopted"}``: the first URL, recorded
  when a new registry is first opened (the URL given, else the default folder), or "adopted" by a
  registry created before storage was recorded, from the first client that names a URL explicitly.
- ``StorageMoved`` ``{"url": new URL, "previous": old URL}``: ``Registry.move_storage`` (``rlreg storage
  move``), recorded only after every object the versions need was found at the new URL.

A client given no URL uses the recorded one; a client given another URL is refused with
``StorageMismatchError`` before anything is written. URLs are compared normalised (``storage.Location``:
``/a/b/``, ``/a/b`` and ``file:///a/b`` are one location; relative paths are made absolute), so
equivalent spellings are never refused. Endpoints and credentials (``AWS_ENDPOINT_URL``, ...) are per
client and never recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from registry import errors
from registry.eventstore import Event, EventStore, NewEvent

REGISTRY_STREAM = "$registry"
STORAGE_BOUND = "StorageBound"
STORAGE_MOVED = "StorageMoved"
STORAGE_EVENTS = (STORAGE_BOUND, STORAGE_MOVED)
ATTEMPTS = 5  # a concurrent first open may bind first: re-read and compare


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
