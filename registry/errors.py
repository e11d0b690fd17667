"""The errors of rlreg, one tree; every class also derives from the builtin it resembles.

    Exception
    ├── RegistryError
    │   ├── NotFoundError (LookupError)            unknown model name, version or alias
    │   │   └── DeletedError                       a deleted version or model (names when, who, why)
    │   ├── ConflictError                          a stream moved under an append; a checkpoint went back
    │   ├── IntegrityError (storage's IntegrityError)  a blob fails its digest (wraps storage's)
    │   ├── InvalidNameError (ValueError)          a bad model, alias or stream name
    │   │   └── InvalidReferenceError              a reference outside NAME[:3|@alias] / rlreg://
    │   ├── InvalidEventError (ValueError)         an event that is not JSON or has a bad type
    │   ├── SchemaVersionError                     the database schema is older or newer than this rlreg
    │   ├── StorageMismatchError (ValueError)      a storage URL other than the one the database records
    │   │   └── StorageSharedError                 gc of a storage that another registry holds too
    │   ├── StorageMoveError (NotFoundError)       a storage move to a location that lacks objects
    │   ├── QueryError (ValueError)                a malformed where/order_by expression (names the token)
    │   ├── ExportTargetError (OSError)            an export target that cannot be written (read-only, a file)
    │   ├── ClosedError (ValueError)               a Registry used after its close(), as a closed file is
    │   └── DatabaseUnavailableError (ConnectionError)  the database cannot be reached or stays locked
    │       ├── DatabaseFullError                  no space left for the database (SQLite's disk is full)
    │       └── DatabaseReadOnlyError              a write to a database opened read-only
    ├── StorageError                               (storage/errors.py, re-exported here)
    │   ├── ObjectNotFoundError (FileNotFoundError)  a file or object is not there
    │   ├── IntegrityError (ValueError)            stored bytes do not match their digest
    │   ├── UnsupportedDtypeError (TypeError)      a tensor or array that cannot be stored
    │   ├── InvalidTensorNameError (TypeError)     a tensor name that is not a non-empty string
    │   ├── InvalidManifestError (ValueError)      a manifest that is not one this store wrote
    │   ├── InvalidDigestError (ValueError)        a string that is not a digest
    │   ├── TensorNotInManifestError (LookupError) a name asked of get() that the manifest lacks
    │   ├── UnknownProtocolError (ValueError)      a URL whose fsspec protocol is unknown
    │   ├── StorageUnavailableError (ConnectionError)  unreachable endpoint, missing bucket/credentials
    │   ├── InvalidSettingError (ValueError)       an RLREG_* variable not understood (storage/config.py)
    │   ├── StorageWriteError (OSError)            a write refused: disk full, read-only, not a folder
    │   ├── NotAFileError (ValueError)             a folder, FIFO, device or socket where a file belongs
    │   ├── JSONDepthError (ValueError)            JSON nested deeper than ``storage.MAX_JSON_DEPTH``
    │   └── OfflineError                           RLREG_OFFLINE=1: needs the database or the bucket
    │       └── NotCachedError (LookupError)       a version, alias or object not in the offline cache
    └── RLModuleError                              (rlmodule/errors.py, re-exported here)
        ├── UntrustedClassError (ValueError)       a class path the trusted-class rule refuses
        ├── SpaceSerializationError (ValueError)   a gym space (or its dict) we cannot encode/decode
        ├── ModelConfigError (TypeError)           a model_config_dict value that is not JSON
        ├── StateSerializationError (ValueError)   a state leaf that is neither tensor nor JSON
        ├── StateMismatchError (ValueError)        a tensor whose name/shape/dtype does not fit
        ├── CheckpointError (ValueError)           a checkpoint we cannot write or read
        │   ├── CheckpointNotFoundError (FileNotFoundError)
        │   └── CheckpointFormatError
        │       └── PickleRefusedError             an RLlib pickle holding what we never rebuild
        └── SpecCheckingError (ValueError)         forward-pass data that does not match the specs

Warnings (``warnings.warn``): ``OfflineAliasWarning`` (UserWarning), an alias (or the latest
version) resolved offline from the cache's last sighting, naming when that was; ``RetentionWarning``
(UserWarning), a retention policy that deletes nothing because no version has its ``keep_best`` key;
``StorageSharedWarning`` (UserWarning), a registry that began to share its storage with another (gc is
refused there from then on).

registry.IntegrityError is also storage's IntegrityError (so also a ValueError): storage raises its
own, the registry wraps it.

Driver errors (sqlite3, psycopg, SQLAlchemy) never escape the event store: they are mapped onto this
tree with ``raise ... from e``.
"""

from __future__ import annotations

from typing import Any

from rlmodule.errors import (  # noqa: F401 - re-exported: the whole tree in one place
    CheckpointError,
    CheckpointFormatError,
    CheckpointNotFoundError,
    ModelConfigError,
    PickleRefusedError,
    RLModuleError,
    SpaceSerializationError,
    SpecCheckingError,
    StateMismatchError,
    StateSerializationError,
    UntrustedClassError,
)
from storage.errors import IntegrityError as StorageIntegrityError
from storage.errors import (  # noqa: F401 - re-exported
    InvalidSettingError,
    InvalidDigestError,
    InvalidManifestError,
    InvalidTensorNameError,
    JSONDepthError,
    NotAFileError,
    NotCachedError,
    ObjectNotFoundError,
    OfflineError,
    StorageError,
    StorageUnavailableError,
    StorageWriteError,
    TensorNotInManifestError,
    UnknownProtocolError,
    UnsupportedDtypeError,
)


class RegistryError(Exception):
    """The root of the registry's errors."""


class NotFoundError(RegistryError, LookupError):
    """An unknown model name, version, alias or event."""


class DeletedError(NotFoundError):
    """A version or model that was deleted; ``name``, ``version`` (``None``: the model), ``deleted_at``,
    ``actor``, ``reason`` and ``position`` say which, when, by whom and why."""

    def __init__(self, message: str, *, name: str = "", version: int | None = None, deleted_at: Any = None,
                 actor: Any = None, reason: str = "", position: int = 0) -> None:
        super().__init__(message)
        self.name, self.version, self.deleted_at = name, version, deleted_at
        self.actor, self.reason, self.position = actor, reason, position


class ConflictError(RegistryError):
    """An append's expected stream version did not match, or a checkpoint would move backwards."""


class IntegrityError(RegistryError, StorageIntegrityError):
    """A stored blob or record fails its check (also storage's ``IntegrityError``)."""


class InvalidNameError(RegistryError, ValueError):
    """A model, alias or stream name that breaks the naming rules."""


class InvalidReferenceError(InvalidNameError):
    """A reference that is not ``NAME``, ``NAME:3``, ``NAME@alias`` or an ``rlreg://`` URI."""


class InvalidEventError(RegistryError, ValueError):
    """An event whose type or payload cannot be recorded."""


class SchemaVersionError(RegistryError):
    """The database schema is older or newer than the installed rlreg."""


class ClosedError(RegistryError, ValueError):
    """A ``Registry`` (or ``EventStore``) used after its ``close()``: open a new one."""


class DatabaseUnavailableError(RegistryError, ConnectionError):
    """The database cannot be reached, or stayed locked past the busy timeout."""


class StorageMismatchError(RegistryError, ValueError):
    """A client was given a storage URL other than the one its registry's database records."""


class StorageSharedError(StorageMismatchError):
    """``gc`` refused: the storage is held by another registry too (``Registry.storage_holders``), whose
    versions may use any object this one no longer does."""


class StorageMoveError(NotFoundError):
    """``move_storage`` refused: the new location lacks objects that recorded versions need."""


class QueryError(RegistryError, ValueError):
    """A ``where`` or ``order_by`` expression that does not parse; ``position`` is the offending character."""

    def __init__(self, message: str, *, text: str = "", position: int = 0) -> None:
        super().__init__(message)
        self.text, self.position = text, position


class DatabaseFullError(DatabaseUnavailableError):
    """The database has no space left to write (SQLite: "database or disk is full")."""


class DatabaseReadOnlyError(DatabaseUnavailableError):
    """A write to a database that is read-only here (a read-only file, folder or filesystem)."""


class ExportTargetError(RegistryError, OSError):
    """An export target that cannot be written: read-only (``rlreg://``, a read-only mount), a file in the way."""


class OfflineAliasWarning(UserWarning):
    """Offline (``RLREG_OFFLINE=1``), an alias or ``latest`` resolved to the version it named when last
    seen online; the message names the alias, the version and when that was (it may have moved since)."""


class StorageSharedWarning(UserWarning):
    """This registry recorded itself as a holder of a storage another registry holds already: neither can
    run ``gc`` there until one moves (the message names the others and what to do)."""


class RetentionWarning(UserWarning):
    """A retention policy that deletes nothing while no live version has a number under its ``keep_best``
    key (mistyped, or recorded only from now on); the message names the model and the key."""
