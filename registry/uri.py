"""``rlreg://`` URIs and the paths of the ``rlreg://`` filesystem.

The grammar (one reading per string, whatever models exist)::

    uri       = "rlreg://" ref [ "/" inner ]
    ref       = name                   the latest version of model ``name``
              | name "/" version       that version (ASCII digits, 1 or more)
              | name "@" alias         the version the alias points at now
              | name "@latest"         the latest version, spelled explicitly
    inner     = a path inside the version's checkpoint folder (only after a version or an alias)

A model name's segments are never all digits and never contain ``@`` (``registry.names``), so the
reference ends at the first segment that is all ASCII digits (the version) or contains ``@`` (the
alias); without either, the whole path is the model name. So ``rlreg://team/p0`` always means the
model ``team/p0``: a component folder of model ``team`` is ``rlreg://team/3/p0`` or
``rlreg://team@best/p0`` (or ``rlreg://team@latest/p0``). ``latest`` is therefore a reserved alias.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.errors import InvalidNameError
from registry.names import MAX_INTEGER, validate_alias, validate_name

SCHEME = "rlreg"
PREFIX = f"{SCHEME}://"
LATEST = "latest"  # ``name@latest`` is the latest version; no alias may be called this
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also accepts '²' and '٣'


def is_version_text(text: str) -> bool:
    """True if ``text`` is all ASCII digits (``str.isdigit`` also accepts '²', '٣')."""
    return bool(_DIGITS.fullmatch(text))


@dataclass(frozen=True)
class ModelRef:
    """A model name with a version, an alias, or neither (the latest version)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return PREFIX + self.path()

    def path(self) -> str:
        """The reference without the scheme: ``name``, ``name/3`` or ``name@alias``."""
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        if self.version is not None:
            return f"{self.name}/{self.version}"
        return self.name


def parse_uri(uri: str) -> ModelRef:
    """Parse ``rlreg://name[/N|@alias]`` into a ``ModelRef``; raise ``InvalidNameError`` if malformed."""
    if not isinstance(uri, str) or not uri.startswith(PREFIX):
        raise InvalidNameError(f"{uri!r} is not an rlreg:// URI (expected rlreg://name[/version|@alias])")
    return parse_ref(uri[len(PREFIX) :], uri=uri)


def parse_ref(ref: str, *, uri: str | None = None) -> ModelRef:
    """Parse ``name``, ``name/N`` or ``name@alias`` (a URI without its scheme, no inner path)."""
    shown = uri if uri is not None else PREFIX + ref
    model, inner = split_path(ref, shown=shown)
    if inner:
        raise InvalidNameError(
            f"{shown!r}: {inner!r} follows the {'alias' if model.alias else 'version'}: "
            "expected rlreg://name, rlreg://name/version or rlreg://name@alias"
        )
    return model


def split_path(path: str, *, shown: str | None = None) -> tuple[ModelRef, str]:
    """Split a protocol-less path into the model reference and the path inside its checkpoint.

    The reference ends at the first all-digit segment (a version) or the first segment with ``@``
    (an alias); without either the whole path is a model name (see the module's grammar).
    """
    shown = shown if shown is not None else PREFIX + path
    segments = path.split("/")
    for i, segment in enumerate(segments):
        inner = "/".join(segments[i + 1 :])
        if "@" in segment:
            head, _, alias = segment.partition("@")
            name = _valid("/".join([*segments[:i], head]), shown)
            if "@" in alias:
                raise InvalidNameError(f"{shown!r}: one '@' per URI (rlreg://name@alias)")
            if alias == LATEST:
                return ModelRef(name), inner
            return ModelRef(name, alias=_valid_alias(alias, shown)), inner
        if i > 0 and is_version_text(segment):
            return ModelRef(_valid("/".join(segments[:i]), shown), version=_version(segment, shown)), inner
    return ModelRef(_valid(path, shown)), ""


def canonical_path(path: str) -> str:
    """``path`` with a bare model name spelled ``name@latest``, so paths below it stay inside it."""
    if not path or "@" in path or any(i > 0 and is_version_text(s) for i, s in enumerate(path.split("/"))):
        return path
    try:
        validate_name(path)
    except InvalidNameError:
        return path  # not a name: left as written, so its error shows what the user wrote
    return f"{path}@{LATEST}"


def _valid(name: str, shown: str) -> str:
    try:
        return validate_name(name)
    except InvalidNameError as exc:
        raise InvalidNameError(f"{shown!r}: {exc}") from None


def _valid_alias(alias: str, shown: str) -> str:
    try:
        return validate_alias(alias)
    except InvalidNameError as exc:
        raise InvalidNameError(f"{shown!r}: {exc}") from None


def _version(text: str, shown: str) -> int:
    version = int(text)
    if version < 1:
        raise InvalidNameError(f"{shown!r}: version {text} is not a version (versions start at 1)")
    if version > MAX_INTEGER:
        raise InvalidNameError(f"{shown!r}: version {text} is out of range (at most {MAX_INTEGER}, 2^63 - 1)")
    return version
