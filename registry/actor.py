"""Who did what: the actor recorded with every event the registry appends.

An actor is a small JSON object::

    {"user": OS user, "host": host name, "pid": process id, "rlreg_version": "0.1.0",
     "actor": RLREG_ACTOR or null, "run_id": RLREG_RUN_ID or null}

``process_actor()`` describes this process; ``acting_as(...)`` (or ``Registry(actor=...)``) overrides
fields for the events appended in a block, e.g. a web server recording the owner of a token as
``actor`` while ``user``/``host``/``pid`` still name the server process.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import socket
from collections.abc import Mapping
from typing import Any

from registry import config, errors

KEYS = ("user", "host", "pid", "rlreg_version", "actor", "run_id")
MAX_TEXT = 200  # characters of one actor field


@functools.lru_cache(maxsize=1)
def rlreg_version() -> str:
    """The installed rlreg package's version (``unknown`` when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rlreg")
    except PackageNotFoundError:
        return "unknown"


_USER_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")  # what getpass.getuser() reads first


def os_user() -> str:
    """The OS user running this process (its uid when it has no name).

    Remembered per uid and user variables: without them ``getpass.getuser()`` reads the password
    database (90 us here), once for every event appended.
    """
    uid = os.getuid() if hasattr(os, "getuid") else None
    return _os_user(uid, tuple(os.environ.get(v) for v in _USER_VARIABLES))


@functools.lru_cache(maxsize=8)
def _os_user(uid: int | None, variables: tuple[str | None, ...]) -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        return str(uid) if uid is not None else "unknown"


def process_actor() -> dict[str, Any]:
    """This process as an actor: OS user, host, pid, rlreg version, ``RLREG_ACTOR``, ``RLREG_RUN_ID``."""
    settings = config.actor_settings()
    return {
        "user": os_user(),
        "host": socket.gethostname()[:MAX_TEXT],
        "pid": os.getpid(),
        "rlreg_version": rlreg_version(),
        "actor": settings["actor"][:MAX_TEXT] if "actor" in settings else None,
        "run_id": settings["run_id"][:MAX_TEXT] if "run_id" in settings else None,
    }


def override(actor: str | Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """The fields an explicit actor sets: ``actor`` a name (str) or a mapping of fields, plus ``fields``.

    Values must be JSON scalars (text at most 200 characters); raises ``InvalidEventError`` otherwise.
    """
    given: dict[str, Any] = {}
    if isinstance(actor, Mapping):
        given.update(actor)
    elif actor is not None:
        given["actor"] = actor
    given.update(fields)
    for key, value in given.items():
        _check_field(key, value)
    return given


def _check_field(key: Any, value: Any) -> None:
    if not isinstance(key, str) or not key or len(key) > MAX_TEXT:
        raise errors.InvalidEventError(f"actor field {key!r}: expected a name of 1-{MAX_TEXT} characters")
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise errors.InvalidEventError(
            f"actor field {key!r}: {type(value).__name__} is not a JSON scalar (text, number, bool or None)"
        )
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise errors.InvalidEventError(f"actor field {key!r}: {len(value)} characters, at most {MAX_TEXT}")
    if isinstance(value, float):
        json.dumps(value, allow_nan=False)  # NaN/inf are not JSON: ValueError is a bug of the caller


def describe(actor: Mapping[str, Any] | None) -> str:
    """Who, in a few words: ``RLREG_ACTOR`` if set, else ``user@host``; ``-`` for an event without one."""
    if not actor:
        return "-"
    who = actor.get("actor") or f"{actor.get('user', '?')}@{actor.get('host', '?')}"
    return f"{who} (run {actor['run_id']})" if actor.get("run_id") else str(who)


def details(actor: Mapping[str, Any] | None) -> str:
    """Everything about an actor on one line (``rlreg show``)."""
    if not actor:
        return "-"
    where = f"{actor.get('user', '?')}@{actor.get('host', '?')}, pid {actor.get('pid', '?')}, rlreg {actor.get('rlreg_version', '?')}"
    extra = {k: v for k, v in actor.items() if k not in KEYS and v is not None}
    extra_text = "".join(f", {k}={v}" for k, v in sorted(extra.items()))
    return f"{describe(actor)} ({where}{extra_text})" if actor.get("actor") or actor.get("run_id") else f"{where}{extra_text}"
