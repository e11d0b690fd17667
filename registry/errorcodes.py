"""The one table from the error tree to what a front end reports: exit codes and HTTP statuses.

The command line (``rlreg/exitcodes.py``) and the web app look errors up here, with ``isinstance``
over the classes of ``registry.errors`` (most specific first), never by class name::

    from registry.errorcodes import outcome_of
    outcome = outcome_of(exc)        # None: not an expected error (a bug: let it raise)
    outcome.exit_code, outcome.http_status, outcome.label, outcome.about

A new error class needs a row only when its nearest mapped ancestor gives the wrong outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from registry import errors


@dataclass(frozen=True)
class Outcome:
    """How one class of expected error is reported."""

    exit_code: int
    http_status: int
    label: str  # "rlreg: <label>: <message>"
    about: str = ""  # "database" or "storage": the URL the message should name


NOT_FOUND = Outcome(3, 404, "not found")
INVALID = Outcome(4, 400, "invalid input")
CONFLICT = Outcome(5, 409, "conflict")
DATABASE = Outcome(6, 503, "database error", about="database")
STORAGE = Outcome(7, 503, "storage error", about="storage")
INTEGRITY = Outcome(8, 500, "damaged object")
SCHEMA = Outcome(9, 503, "schema out of date")
UNTRUSTED = Outcome(10, 403, "untrusted class")
OFFLINE = Outcome(11, 503, "offline")

# Most specific first: the first row whose class the error is an instance of decides.
TABLE: tuple[tuple[type[BaseException], Outcome], ...] = (
    (errors.SchemaVersionError, SCHEMA),
    (errors.UntrustedClassError, UNTRUSTED),
    (errors.StorageIntegrityError, INTEGRITY),  # registry.IntegrityError is one too
    (errors.OfflineError, OFFLINE),  # before NotFound/Storage: a NotCachedError says "load it online first"
    (errors.ConflictError, CONFLICT),
    (errors.NotFoundError, NOT_FOUND),
    (errors.ObjectNotFoundError, NOT_FOUND),
    (errors.CheckpointNotFoundError, NOT_FOUND),
    (errors.TensorNotInManifestError, NOT_FOUND),
    (errors.DatabaseUnavailableError, DATABASE),
    (errors.StorageUnavailableError, STORAGE),
    (errors.StorageWriteError, STORAGE),  # the store's disk is full or read-only: not the input's fault
    (errors.UnknownProtocolError, STORAGE),
    (errors.RegistryError, INVALID),
    (errors.StorageError, INVALID),
    (errors.RLModuleError, INVALID),
    # Not ours but never a bug: the environment refused (a path, a permission, a connection).
    (FileNotFoundError, NOT_FOUND),
    (PermissionError, STORAGE),
    (NotADirectoryError, STORAGE),  # a file where a folder should be (RLREG_HOME, --cache-dir)
    (IsADirectoryError, STORAGE),
    (FileExistsError, STORAGE),
    (ConnectionError, STORAGE),
    (TimeoutError, STORAGE),
)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """The error and the errors it was raised from (``raise ... from e``), outermost first."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__


def outcome_of(exc: BaseException) -> Outcome | None:
    """The outcome of an expected error, or ``None`` for a bug.

    The outermost error decides; the errors it was raised from count only when it is not mapped.
    """
    for error in _chain(exc):
        for cls, outcome in TABLE:
            if isinstance(error, cls):
                return outcome
    return None
