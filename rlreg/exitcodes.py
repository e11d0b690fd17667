"""Exit codes of the ``rlreg`` command, one per class of expected error.

======  ==========================================================================
code    meaning
======  ==========================================================================
0       success
1       unexpected error (a bug: the traceback is printed)
2       usage error (unknown command or option, missing argument)
3       not found: unknown model, version or alias; missing checkpoint path
4       invalid input: bad model name, bad reference, bad metadata, bad checkpoint
5       conflict: a concurrent writer won (retry)
6       database unreachable or refusing the connection
7       storage unreachable: bucket missing, credentials refused, unknown protocol
8       integrity: a stored object fails its digest (``verify`` found damage)
9       schema out of date (or newer than this package): run ``rlreg db upgrade``
10      untrusted class: a checkpoint names a class outside the trusted modules
130     interrupted (Ctrl-C)
======  ==========================================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterator

OK = 0
UNEXPECTED = 1
USAGE = 2
NOT_FOUND = 3
INVALID = 4
CONFLICT = 5
DATABASE = 6
STORAGE = 7
INTEGRITY = 8
SCHEMA = 9
UNTRUSTED = 10
INTERRUPTED = 130

LABELS = {
    NOT_FOUND: "not found",
    INVALID: "invalid input",
    CONFLICT: "conflict",
    DATABASE: "database error",
    STORAGE: "storage error",
    INTEGRITY: "damaged object",
    SCHEMA: "schema out of date",
    UNTRUSTED: "untrusted class",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _module_root(exc: BaseException) -> str:
    return type(exc).__module__.split(".")[0]


def classify(exc: BaseException) -> int | None:
    """The exit code for an expected error, or ``None`` when it is a bug (let it raise)."""
    for code, test in _RULES:
        if any(test(e) for e in _chain(exc)):
            return code
    return None


def _is(*names: str):
    return lambda e: bool(_names(e) & set(names))


def _driver_connection_error(e: BaseException) -> bool:
    return _module_root(e) in {"sqlalchemy", "psycopg", "sqlite3", "alembic"} and bool(
        _names(e) & {"OperationalError", "InterfaceError", "DatabaseError", "ArgumentError",
                     "NoSuchModuleError", "CommandError"}
    )


def _storage_unreachable(e: BaseException) -> bool:
    root = _module_root(e)
    if root in {"botocore", "aiobotocore", "s3fs", "aiohttp", "fsspec"}:
        return True
    return root == "storage" and bool(
        _names(e) & {"StorageUnavailableError", "UnreachableError", "BucketNotFoundError",
                     "UnknownProtocolError", "CredentialsError", "StorageConfigError"}
    )


# Order matters: the most specific classes first (a registry IntegrityError is also a
# RegistryError; an UntrustedClassError may also be an ImportError or a ValueError).
_RULES = (
    (SCHEMA, _is("SchemaError", "SchemaOutOfDateError", "SchemaMismatchError", "SchemaVersionError")),
    (UNTRUSTED, _is("UntrustedClassError")),
    (INTEGRITY, _is("IntegrityError", "DamageFoundError", "DemoMismatchError", "DigestMismatchError", "CorruptObjectError")),
    (CONFLICT, _is("ConflictError")),
    (NOT_FOUND, _is("NotFoundError", "ObjectNotFoundError", "ModelNotFoundError",
                    "VersionNotFoundError", "AliasNotFoundError", "CheckpointNotFoundError")),
    (INVALID, _is("InvalidNameError", "InvalidReferenceError", "CheckpointError",
                  "StateSerializationError", "InvalidMetadataError", "ValidationError")),
    (DATABASE, _driver_connection_error),
    (DATABASE, _is("DatabaseUnavailableError", "DatabaseError", "EventStoreError")),
    (STORAGE, _storage_unreachable),
    (STORAGE, _is("StorageError")),
    (NOT_FOUND, _is("FileNotFoundError")),
    (STORAGE, _is("PermissionError", "ConnectionError", "TimeoutError")),
    (INVALID, _is("RegistryError", "RLModuleError", "CLIError")),
)

_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def mask_secrets(text: str) -> str:
    """Hide the password of any URL in ``text``."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def one_line(exc: BaseException) -> str:
    """The error's message as one line (the first line; SQLAlchemy's background links dropped)."""
    text = str(exc).strip() or exc.__class__.__name__
    first = text.splitlines()[0].strip()
    first = re.sub(r"^\((?:[\w.]+)\)\s*", "", first)  # "(psycopg.OperationalError) ..."
    return mask_secrets(first)
