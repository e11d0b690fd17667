"""Tags (``key=value`` text on a version) and descriptions: what the registry accepts."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from registry.errors import InvalidNameError
from registry.query import MAX_TEXT

MAX_KEY = 100
MAX_VALUE = 500
MAX_VALUE_BYTES = MAX_TEXT  # the longest text a search row holds: a longer value was stored, never found
MAX_DESCRIPTION = 10_000
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def validate_key(key: Any) -> str:
    """``key`` if it is a tag key (a letter or ``_``, then letters, digits, ``_.-``; 1-100), else raise."""
    if not isinstance(key, str) or not _KEY.fullmatch(key) or len(key) > MAX_KEY:
        raise InvalidNameError(
            f"tag key {key!r} is not allowed: 1-{MAX_KEY} letters, digits, '_', '.' or '-', starting with a "
            "letter or '_'"
        )
    return key


def validate_tags(tags: Any) -> dict[str, str]:
    """A copy of ``tags`` if it is a non-empty mapping of tag keys to text, else ``InvalidNameError``."""
    if not isinstance(tags, Mapping) or not tags:
        raise InvalidNameError(f"tags must be a non-empty dict of key -> text, got {tags!r}")
    out = {}
    for key, value in tags.items():
        validate_key(key)
        if (not isinstance(value, str) or len(value) > MAX_VALUE or not value.isprintable()
                or len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES):
            raise InvalidNameError(
                f"tag {key!r}: the value {value!r:.80} is not text of at most {MAX_VALUE} printable characters "
                f"and {MAX_VALUE_BYTES} bytes in UTF-8"
            )
        out[key] = value
    return out


def validate_keys(keys: Iterable[Any]) -> list[str]:
    """``keys`` as a list of distinct tag keys (at least one)."""
    if isinstance(keys, str):
        keys = [keys]
    out = list(dict.fromkeys(validate_key(k) for k in keys))
    if not out:
        raise InvalidNameError("no tag keys given to remove")
    return out


def validate_description(text: Any) -> str:
    """``text`` if it is a description (text of at most 10,000 characters; ``""`` clears it)."""
    if not isinstance(text, str) or len(text) > MAX_DESCRIPTION or "\0" in text:
        raise InvalidNameError(f"a description is text of at most {MAX_DESCRIPTION} characters and no NUL (\\0), "
                               f"got {text!r:.60}")
    return text


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["stage=eval", "seed=3"]`` as ``{"stage": "eval", "seed": "3"}`` (the CLI's ``k=v`` form)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidNameError(f"tag {item!r}: expected KEY=VALUE")
        out[validate_key(key)] = value
    return validate_tags(out)
