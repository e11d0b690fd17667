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
141     the output pipe was closed by its reader (``rlreg events --follow | head``)
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
PIPE_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left

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


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """The error and the errors it was raised from (``raise ... from e``), outermost first."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _module_root(exc: BaseException) -> str:
    return type(exc).__module__.split(".")[0]


def classify(exc: BaseException) -> int | None:
    """The exit code for an expected error, or ``None`` when it is a bug (let it raise).

    The outermost error decides; the errors it was raised from are consulted only when it is not
    one of ours (a driver error wrapped without a class of its own).
    """
    for error in _chain(exc):
        for code, test in _RULES:
            if test(error):
                return code
    return None


def _is(*names: str):
    return lambda e: bool(_names(e) & set(names))


def _driver_error(e: BaseException) -> bool:
    return _module_root(e) in {"sqlalchemy", "psycopg", "sqlite3", "alembic"} and bool(
        _names(e) & {"OperationalError", "InterfaceError", "DatabaseError", "ArgumentError", "CommandError"}
    )


def _object_store_error(e: BaseException) -> bool:
    return _module_root(e) in {"botocore", "aiobotocore", "s3fs", "aiohttp"}


# Order matters: the most specific classes first (a registry IntegrityError is also a
# RegistryError; an UntrustedClassError is also a ValueError).
_RULES = (
    (SCHEMA, _is("SchemaVersionError")),
    (UNTRUSTED, _is("UntrustedClassError")),
    (INTEGRITY, _is("IntegrityError", "DamageFoundError", "DemoMismatchError")),
    (CONFLICT, _is("ConflictError")),
    (NOT_FOUND, _is("NotFoundError", "ObjectNotFoundError", "CheckpointNotFoundError")),
    (DATABASE, _is("DatabaseUnavailableError")),
    (DATABASE, _driver_error),
    (STORAGE, _is("StorageUnavailableError", "UnknownProtocolError", "StorageError")),
    (STORAGE, _object_store_error),
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
