"""Model and alias names: what the registry accepts, with errors that name the rule broken."""

from __future__ import annotations

import re

from registry.errors import InvalidNameError

MAX_NAME_LENGTH = 200
MAX_ALIAS_LENGTH = 100
MAX_INTEGER = 2**63 - 1  # versions, positions and limits are 64-bit integers in both databases
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_ALIAS = re.compile(r"[A-Za-z0-9._-]+")
_DIGITS = re.compile(r"[0-9]+")


_VALID: dict[str, None] = {}  # names found valid lately (a snapshot checks its name each time)
_VALID_KEPT = 1024


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid model name, else raise ``InvalidNameError`` saying why.

    A name is 1-200 characters of ASCII letters, digits, ``._-`` and ``/`` between non-empty
    segments; no ``.`` or ``..`` segment, no leading or trailing ``/``; no segment is all digits (in
    ``rlreg://name/3/p0`` the first all-digit segment is the version: see ``registry.uri``).
    """
    if type(name) is str and name in _VALID:
        return name
    if not isinstance(name, str):
        raise InvalidNameError(f"model name {name!r} is not a string (got {type(name).__name__})")
    if not name:
        raise InvalidNameError("model name '' is empty: a name has 1 to 200 characters")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"model name {name[:40]!r}... is {len(name)} characters long: at most {MAX_NAME_LENGTH}"
        )
    bad = sorted({c for c in name if c.isspace() or not c.isprintable()})
    if bad:
        raise InvalidNameError(
            f"model name {name!r} contains whitespace or control characters {bad!r}: not allowed"
        )
    if name.startswith("/") or name.endswith("/"):
        raise InvalidNameError(f"model name {name!r} starts or ends with '/': not allowed")
    segments = name.split("/")
    for segment in segments:
        _check_segment(name, segment)
    digits = next((s for s in segments if _DIGITS.fullmatch(s)), None)
    if digits is not None:
        raise InvalidNameError(
            f"model name {name!r} has the all-digit segment {digits!r}: not allowed, because in "
            "rlreg://name/3 the first all-digit segment is the version (write e.g. 'v3' or 'run3')"
        )
    if type(name) is str:
        if len(_VALID) >= _VALID_KEPT:
            _VALID.clear()
        _VALID[name] = None
    return name


def _check_segment(name: str, segment: str) -> None:
    if not segment:
        raise InvalidNameError(f"model name {name!r} has an empty segment ('//'): not allowed")
    if segment in (".", ".."):
        raise InvalidNameError(f"model name {name!r} has a {segment!r} segment: not allowed (dot segments name folders)")
    if not _SEGMENT.fullmatch(segment):
        bad = sorted({c for c in segment if not _SEGMENT.fullmatch(c)})
        raise InvalidNameError(
            f"model name {name!r} contains {''.join(bad)!r}: only letters, digits, '.', '_', '-' "
            "and '/' between segments are allowed"
        )


def validate_alias(alias: object) -> str:
    """Return ``alias`` if valid (1-100 letters, digits, ``._-``; not ``.``/``..``), else raise."""
    if not isinstance(alias, str):
        raise InvalidNameError(f"alias {alias!r} is not a string (got {type(alias).__name__})")
    if not alias or len(alias) > MAX_ALIAS_LENGTH:
        raise InvalidNameError(
            f"alias {alias[:40]!r} has {len(alias)} characters: an alias has 1 to {MAX_ALIAS_LENGTH}"
        )
    if alias in {".", ".."} or not _ALIAS.fullmatch(alias):
        raise InvalidNameError(
            f"alias {alias!r} is not allowed: use letters, digits, '.', '_' and '-' only "
            "(and not '.' or '..')"
        )
    return alias


def nul_in(value: object) -> str | None:
    """The first text holding a NUL character in ``value`` (a JSON value: keys too), else ``None``.
    PostgreSQL's text columns cannot hold one; SQLite's can: refused on both, alike."""
    if isinstance(value, str):
        return value if "\0" in value else None
    if isinstance(value, dict):
        for key, inner in value.items():
            found = nul_in(key) or nul_in(inner)
            if found is not None:
                return found
    elif isinstance(value, list):
        for inner in value:
            found = nul_in(inner)
            if found is not None:
                return found
    return None


def did_you_mean(name: str, known: list[str]) -> str:
    """`` (did you mean 'walk'?)`` naming the recorded names closest to ``name``, or ``""``."""
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)"


def validate_version(version: object, what: str = "version") -> int:
    """Return ``version`` if it is an int from 1 to ``MAX_INTEGER``, else raise ``InvalidNameError`` saying why."""
    return _bounded(version, what, 1)


def int_of_digits(text: str) -> int:
    """The value of ``text`` (ASCII digits), or ``MAX_INTEGER + 1`` when it is larger than any version or
    position, so that range checks refuse it: ``int()`` itself raises ``ValueError`` past 4,300 digits."""
    significant = text.lstrip("0") or "0"
    return int(significant) if len(significant) <= 1000 else MAX_INTEGER + 1


def validate_position(value: object, what: str) -> int:
    """Return ``value`` (an event position or count) if it is an int from 0 to ``MAX_INTEGER``, else raise."""
    return _bounded(value, what, 0)


def _bounded(value: object, what: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidNameError(f"{what} {value!r} is not an integer")
    if not least <= value <= MAX_INTEGER:
        raise InvalidNameError(f"{what} {value} is out of range: expected {least} to {MAX_INTEGER} (2^63 - 1)")
    return value
