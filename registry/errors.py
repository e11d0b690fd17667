"""The errors of rlreg, one tree; every class also derives from the builtin it resembles.

    Exception
    ├── RegistryError
    │   ├── NotFoundError (LookupError)            unknown model name, version or alias
    │   ├── ConflictError                          a stream moved under an append; a checkpoint went back
    │   ├── IntegrityError (storage IntegrityError) a blob fails its digest (wraps storage's)
    │   ├── InvalidNameError (ValueError)          a bad model, alias or stream name
    │   ├── InvalidEventError (ValueError)         an event that is not JSON or has a bad type
    │   ├── SchemaVersionError                     the database schema is older or newer than this rlreg
    │   └── DatabaseUnavailableError (ConnectionError)  the database cannot be reached or stays locked
    ├── storage.StorageError                       (storage/errors.py, re-exported here when present)
    └── rlmodule.RLModuleError                     (rlmodule/errors.py, re-exported here when present)

Driver errors (sqlite3, psycopg, SQLAlchemy) never escape the event store: they are mapped onto this
tree with ``raise ... from e``.
"""

from __future__ import annotations

try:  # storage's branch; the registry's IntegrityError subclasses storage's own.
    from storage.errors import *  # noqa: F401,F403
    from storage.errors import IntegrityError as _StorageIntegrityError
except ImportError:  # storage has not landed its errors module yet
    _StorageIntegrityError = ValueError  # type: ignore[misc,assignment]

try:  # rlmodule's branch
    from rlmodule.errors import *  # noqa: F401,F403
except ImportError:
    pass


class RegistryError(Exception):
    """The root of the registry's errors."""


class NotFoundError(RegistryError, LookupError):
    """An unknown model name, version, alias or event."""


class ConflictError(RegistryError):
    """An append's expected stream version did not match, or a checkpoint would move backwards."""


class IntegrityError(RegistryError, _StorageIntegrityError):  # type: ignore[misc,valid-type]
    """A stored blob or record fails its check (also storage's ``IntegrityError``)."""


class InvalidNameError(RegistryError, ValueError):
    """A model, alias or stream name that breaks the naming rules."""


class InvalidEventError(RegistryError, ValueError):
    """An event whose type or payload cannot be recorded."""


class SchemaVersionError(RegistryError):
    """The database schema is older or newer than the installed rlreg."""


class DatabaseUnavailableError(RegistryError, ConnectionError):
    """The database cannot be reached, or stayed locked past the busy timeout."""
