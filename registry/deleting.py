"""``Registry.delete_version``, ``delete_model`` and ``restore_version``: checks, then one append each."""

from __future__ import annotations

from typing import Any

import storage

from registry import errors, lifecycle
from registry import gc as collector
from registry.eventstore import Event
from registry.names import validate_name, validate_version


def _check_version(name: str, version: Any) -> int:
    """``version`` if it is an int from 1 to 2^63 - 1 (a larger one overflows SQLite's integers)."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise errors.InvalidNameError(f"model {name!r}: version {version!r} is not a positive integer")
    return validate_version(version, f"model {name!r}: version")


def delete_version(reg: Any, name: str, version: int, *, reason: str, force: bool = False) -> Event:
    """Append ``[AliasRemoved..., VersionDeleted]``; returns the ``VersionDeleted`` event."""
    validate_name(name)
    version, reason = _check_version(name, version), lifecycle.check_reason(name, reason)

    def make(latest: int, last_digest: str | None) -> list:
        with reg._read(f"reading model {name!r}") as conn:
            reg._row(conn, name, version, None)  # NotFoundError, or DeletedError if it is already deleted
            return lifecycle.version_deleted(conn, name, version, reason, force)

    return reg._append_with_retry(name, make)[-1]


def delete_model(reg: Any, name: str, *, reason: str, force: bool = False) -> Event:
    """Append ``[AliasRemoved..., ModelDeleted]``; returns the ``ModelDeleted`` event."""
    validate_name(name)
    reason = lifecycle.check_reason(name, reason)

    def make(latest: int, last_digest: str | None) -> list:
        with reg._read(f"reading model {name!r}") as conn:
            return lifecycle.model_deleted(conn, name, reason, force)

    return reg._append_with_retry(name, make)[-1]


def restore_version(reg: Any, name: str, version: int) -> Event:
    """Append ``VersionRestored`` if every object of the version is still stored."""
    validate_name(name)
    version = _check_version(name, version)

    def make(latest: int, last_digest: str | None) -> list:
        with reg._read(f"reading model {name!r}") as conn:
            return lifecycle.version_restored(conn, name, version)

    with reg._read(f"reading model {name!r}") as conn:
        lifecycle.version_restored(conn, name, version)  # NotFoundError / ConflictError before touching objects
        manifest = lifecycle.manifest_of(conn, name, version)
    needed = set(storage.manifest_objects(manifest))
    reg._hold_storage()  # (the version uses its objects again: another registry's gc must see this one first)
    missing = sorted(needed - reg.store.exists(needed))
    if missing:
        raise errors.NotFoundError(
            f"cannot restore model {name!r} version {version}: {len(missing)} of its {len(needed)} objects "
            f"were reclaimed by gc (e.g. {missing[0]}); it stays deleted"
        )
    try:
        return collector.append_referencing(reg, name, manifest, make, reupload=None)[-1]
    except collector.ObjectsCollectedError as exc:
        raise errors.NotFoundError(f"cannot restore model {name!r} version {version}: {exc}") from None
