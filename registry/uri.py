"""References to a model version: the one grammar of the CLI, the API and ``rlreg://``.

A reference (``parse_reference``) is any of::

    NAME              the latest version          rlreg://NAME
    NAME:3            version 3                   rlreg://NAME/3      (also NAME/3)
    NAME@best         what the alias points at    rlreg://NAME@best   (NAME@latest: the latest)

A version is ASCII digits, 1 or more (``NAME:²`` is an ``InvalidReferenceError``, never a crash).
A selector (``parse_selector``, the VERSION of ``rlreg alias set NAME prod VERSION`` and the A/B of
``rlreg diff``) is ``3``, ``@best`` or ``best``.

The URI grammar (one reading per string, whatever models exist)::

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

from registry.errors import InvalidNameError, InvalidReferenceError
from registry.names import MAX_INTEGER, int_of_digits, validate_alias, validate_name

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


def parse_reference(text: str) -> ModelRef:
    """Parse ``NAME``, ``NAME:3``, ``NAME@alias``, ``NAME/3`` or an ``rlreg://`` URI into a ``ModelRef``.

    Anything else raises ``InvalidReferenceError`` (an ``InvalidNameError``) naming the text.
    """
    if not isinstance(text, str):
        raise InvalidReferenceError(f"reference {text!r} is not a string (got {type(text).__name__})")
    if text.startswith(PREFIX):
        return _as_reference_error(parse_uri, text)
    if "://" in text:
        raise InvalidReferenceError(f"reference {text!r}: only rlreg:// URIs are references ({_FORMS})")
    head, colon, version = text.rpartition(":")
    if not colon:
        return _as_reference_error(parse_ref, text, uri=text)
    if not head or "@" in text or not is_version_text(version) or int_of_digits(version) < 1:
        raise InvalidReferenceError(
            f"reference {text!r}: expected NAME:VERSION with VERSION a positive integer (ASCII digits)"
        )
    return ModelRef(_as_reference_error(validate_name, head), version=int_of_digits(version))


def parse_selector(name: str, text: str | int) -> ModelRef:
    """``3``, ``@best`` or ``best`` (a version or an alias of ``name``) as a ``ModelRef``."""
    if isinstance(text, int) and not isinstance(text, bool):
        return ModelRef(validate_name(name), version=text) if text >= 1 else parse_reference(f"{name}:{text}")
    if not isinstance(text, str) or not text:
        raise InvalidReferenceError(f"version {text!r} of {name!r}: expected a version (3) or an alias (@best)")
    if is_version_text(text):
        return parse_reference(f"{name}:{text}")
    return parse_reference(f"{name}@{text.removeprefix('@')}")


def reference(name: str, version: int | str | None = None, alias: str | None = None) -> ModelRef:
    """The API's ``(name, version=None, alias=None)`` as one ``ModelRef``; ``name`` may be a reference.

    ``load("walk:3")``, ``load("rlreg://walk@best")`` and ``load("walk", 3)`` mean what they say
    (a version is an ``int``: ``load("walk", "3")`` is refused);
    a version or alias given twice (``load("walk:3", alias="best")``) is an ``InvalidReferenceError``.
    """
    if isinstance(name, str) and (name.startswith(PREFIX) or ":" in name or "@" in name or _has_version(name)):
        ref = parse_reference(name)
        if version is not None or alias is not None:
            raise InvalidReferenceError(
                f"reference {name!r} already names {'alias ' + repr(ref.alias) if ref.alias else 'its version'}:"
                " give the version or alias in the reference or as arguments, not both"
            )
        return ref
    validate_name(name)
    if version is not None and alias is not None:
        raise InvalidReferenceError(f"model {name!r}: give a version or an alias, not both")
    if alias is not None:
        validate_alias(alias)
        return ModelRef(name) if alias == LATEST else ModelRef(name, alias=alias)
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise InvalidReferenceError(
            f"model {name!r}: version {version!r} is not an integer (a reference such as '{name}:3' or "
            f"'{name}@best' goes in the name)"
        )
    return ModelRef(name, version=version)


def _has_version(path: str) -> bool:
    return any(i > 0 and is_version_text(s) for i, s in enumerate(path.split("/")))


_FORMS = "NAME, NAME:3, NAME@alias, rlreg://NAME/3 or rlreg://NAME@alias"


def _as_reference_error(func, *args, **kwargs):
    """``func(*args)``, its ``InvalidNameError`` raised again as an ``InvalidReferenceError``."""
    try:
        return func(*args, **kwargs)
    except InvalidReferenceError:
        raise
    except InvalidNameError as exc:
        raise InvalidReferenceError(str(exc)) from None


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
    if not path or "@" in path or _has_version(path):
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
    version = int_of_digits(text)
    if version < 1:
        raise InvalidNameError(f"{shown!r}: version {text} is not a version (versions start at 1)")
    if version > MAX_INTEGER:
        raise InvalidNameError(f"{shown[:60]!r}: version {text[:30]}{'…' if len(text) > 30 else ''} is out of range "
                               f"(at most {MAX_INTEGER}, 2^63 - 1)")
    return version
