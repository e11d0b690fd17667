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
11      offline (``RLREG_OFFLINE=1``): not in the local cache, or needs the database or bucket
130     interrupted (Ctrl-C)
141     the output pipe was closed by its reader (``rlreg events --follow | head``)
======  ==========================================================================
"""

from __future__ import annotations

import errno
import re

from registry import errorcodes

OK = 0
UNEXPECTED = 1
USAGE = 2
NOT_FOUND = errorcodes.NOT_FOUND.exit_code
INVALID = errorcodes.INVALID.exit_code
CONFLICT = errorcodes.CONFLICT.exit_code
DATABASE = errorcodes.DATABASE.exit_code
STORAGE = errorcodes.STORAGE.exit_code
INTEGRITY = errorcodes.INTEGRITY.exit_code
SCHEMA = errorcodes.SCHEMA.exit_code
UNTRUSTED = errorcodes.UNTRUSTED.exit_code
OFFLINE = errorcodes.OFFLINE.exit_code
INTERRUPTED = 130
PIPE_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left

LABELS = {outcome.exit_code: outcome.label for _, outcome in errorcodes.TABLE}


def classify(exc: BaseException) -> int | None:
    """The exit code for an expected error, or ``None`` when it is a bug (let it raise).

    ``registry.errorcodes`` decides, by ``isinstance`` over the one error tree (the web app's HTTP
    statuses come from the same table).
    """
    outcome = errorcodes.outcome_of(exc)
    return None if outcome is None else outcome.exit_code


# What the system refuses the command itself (its output full, its port in use), not the registry's
# database or storage: one line ("rlreg: system error: ..."), the exit code of storage errors.
SYSTEM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EADDRINUSE,
                           errno.EADDRNOTAVAIL, errno.EMFILE, errno.ENFILE})
SYSTEM = errorcodes.STORAGE.exit_code


_URL_PASSWORD = re.compile(r"(://[^:/@\s]{1,256}:)[^@\s]{1,1024}@")  # (bounded: no quadratic search)
_URL_MAX = 1300  # characters of the longest "://user:password@" the pattern masks


def mask_secrets(text: str) -> str:
    """Hide the password of any URL in ``text``."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def one_line(exc: BaseException, text: str | None = None) -> str:
    """The error's message (or ``text``, what a front end made of it) as one line: the first line,
    SQLAlchemy's background links dropped, passwords masked, at most ``MESSAGE_MAX`` characters (a
    100,000-character argument echoed back: its middle is cut, the end, what to do, is kept)."""
    text = (str(exc) if text is None else text).strip() or exc.__class__.__name__
    first = text.splitlines()[0].strip()
    first = re.sub(r"^\((?:[\w.]+)\)\s*", "", first)  # "(psycopg.OperationalError) ..."
    if len(first) <= MESSAGE_MAX:
        return mask_secrets(first)
    # Each kept part masked with a margin a whole URL fits in (a URL across a cut is masked before
    # it is cut), not the whole line: 100,000 characters of "://u:" took seconds to mask.
    head = mask_secrets(first[: MESSAGE_MAX - _KEPT_END + _URL_MAX])[: MESSAGE_MAX - _KEPT_END]
    tail = mask_secrets(first[-(_KEPT_END + _URL_MAX):])[-_KEPT_END:]
    return f"{head} ... ({len(first) - MESSAGE_MAX} characters cut) ... {tail}"


MESSAGE_MAX = 2000  # characters of an error's one line
_KEPT_END = 600  # of them, from its end
