"""registry: RLModule specs and state snapshots recorded as events, replayed on demand.

``Registry(db_url, storage_url)`` is the API; the module-level functions (``registry.load(name)``,
``registry.snapshot(name, module)``, ...) use the default registry of ``RLREG_DB_URL`` and
``RLREG_STORAGE_URL`` as they are at the moment of the call (else the local data folder).
"""

from __future__ import annotations

import sys
from typing import Any

from typing import TYPE_CHECKING

from registry import config
from storage import forklocks
from registry.errors import (
    ClosedError, ConflictError, DatabaseUnavailableError, DeletedError, IntegrityError, InvalidEventError, InvalidNameError,
    NotCachedError, NotFoundError, OfflineAliasWarning, OfflineError, QueryError, RegistryError, RetentionWarning,
    SchemaVersionError, StorageMismatchError, StorageMoveError, StorageSharedError, StorageSharedWarning,
)
from registry.eventstore import Event
from registry.modeldiff import ModelDiff
from registry.records import ModelInfo, ModelVersion
from registry.uri import ModelRef, parse_uri

if TYPE_CHECKING:
    from registry.api import Registry


def __getattr__(attr: str) -> Any:
    # ``Registry`` pulls in rlmodule and storage: import it on first use, so that
    # ``import registry.eventstore`` (or the rlreg:// entry point's discovery) stays light.
    if attr == "Registry":
        from registry.api import Registry

        return Registry
    if attr == "PendingVersion":
        from registry.pending import PendingVersion

        return PendingVersion
    raise AttributeError(f"module 'registry' has no attribute {attr!r}")

__all__ = [
    "ClosedError", "ConflictError", "DatabaseUnavailableError", "DeletedError", "Event", "IntegrityError", "InvalidEventError",
    "InvalidNameError", "ModelDiff", "ModelInfo", "ModelRef", "ModelVersion", "NotCachedError", "NotFoundError",
    "OfflineAliasWarning", "OfflineError", "RetentionWarning",
    "PendingVersion", "QueryError", "Registry", "RegistryError", "SchemaVersionError", "StorageMismatchError",
    "StorageMoveError", "StorageSharedError", "StorageSharedWarning",
    "default_registry", "parse_uri",
    "snapshot", "register", "load", "version", "versions", "models", "spec", "manifest", "history",
    "events", "follow", "set_alias", "aliases", "remove_alias", "diff", "export", "import_checkpoint",
    "rebuild_projections", "verify", "schema_status", "upgrade_schema",
]

_DEFAULTS: dict[tuple[str, str | None, bool], "Registry"] = {}
_LOCK = forklocks.new_lock(sys.modules[__name__], "_LOCK")  # (a parent's thread may hold it, opening one, at a fork)


def default_registry(db_url: str | None = None, storage_url: str | None = None) -> "Registry":
    """The process's shared ``Registry`` for these URLs (default: the environment's, read now)."""
    from registry.api import Registry

    from storage import config as settings

    key = (db_url or config.default_db_url(), storage_url or config.storage_url_setting(), settings.offline())
    with _LOCK:
        reg = _DEFAULTS.get(key)
        # a closed or closing one (someone called close() on it) is opened again, but not for a snapshot
        # that close() waits for (its progress callback): the registry it writes to waits for its turn
        if reg is None or (reg.closed and not reg._in_own_job()):
            reg = _DEFAULTS[key] = Registry(key[0], key[1], offline=key[2])
        return reg


def snapshot(name: str, module: Any, metadata: dict | None = None, *, block: bool = True) -> Any:
    """``Registry.snapshot`` on the default registry (``block=False``: a ``PendingVersion``)."""
    return default_registry().snapshot(name, module, metadata, block=block)


def register(name: str, spec: Any) -> str:
    """``Registry.register`` on the default registry."""
    return default_registry().register(name, spec)


def load(name: str, version: int | None = None, alias: str | None = None) -> Any:
    """``Registry.load`` on the default registry."""
    return default_registry().load(name, version, alias=alias)


def version(name: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
    """``Registry.version`` on the default registry."""
    return default_registry().version(name, version, alias=alias)


def versions(name: str, where: str | None = None, order_by: str | None = None, limit: int | None = None) -> list[ModelVersion]:
    """``Registry.versions`` on the default registry."""
    return default_registry().versions(name, where=where, order_by=order_by, limit=limit)


def models() -> list[ModelInfo]:
    """``Registry.models`` on the default registry."""
    return default_registry().models()


def spec(name: str, version: int | None = None, alias: str | None = None) -> dict:
    """``Registry.spec`` on the default registry."""
    return default_registry().spec(name, version, alias=alias)


def manifest(name: str, version: int | None = None, alias: str | None = None) -> dict:
    """``Registry.manifest`` on the default registry."""
    return default_registry().manifest(name, version, alias=alias)


def history(name: str) -> list[Event]:
    """``Registry.history`` on the default registry."""
    return default_registry().history(name)


def events(after: int = 0, limit: int | None = None) -> list[Event]:
    """``Registry.events`` on the default registry."""
    return default_registry().events(after, limit)


def follow(after: int = 0, **kwargs: Any):
    """``Registry.follow`` on the default registry."""
    return default_registry().follow(after, **kwargs)


def set_alias(name: str, alias: str, version: int) -> Event:
    """``Registry.set_alias`` on the default registry."""
    return default_registry().set_alias(name, alias, version)


def aliases(name: str) -> dict[str, int]:
    """``Registry.aliases`` on the default registry."""
    return default_registry().aliases(name)


def remove_alias(name: str, alias: str) -> Event:
    """``Registry.remove_alias`` on the default registry."""
    return default_registry().remove_alias(name, alias)


def diff(name: str, a: int | str, b: int | str) -> ModelDiff:
    """``Registry.diff`` on the default registry."""
    return default_registry().diff(name, a, b)


def export(name: str, version: int | None, path: Any, alias: str | None = None) -> str:
    """``Registry.export`` on the default registry."""
    return default_registry().export(name, version, path, alias=alias)


def import_checkpoint(name: str, path: Any, metadata: dict | None = None) -> ModelVersion:
    """``Registry.import_checkpoint`` on the default registry."""
    return default_registry().import_checkpoint(name, path, metadata)


def rebuild_projections() -> int:
    """``Registry.rebuild_projections`` on the default registry."""
    return default_registry().rebuild_projections()


def verify(repair: bool = False) -> dict:
    """``Registry.verify`` on the default registry."""
    return default_registry().verify(repair)


def schema_status():
    """``Registry.schema_status`` on the default registry."""
    return default_registry().schema_status()


def upgrade_schema():
    """``Registry.upgrade_schema`` on the default registry."""
    return default_registry().upgrade_schema()
