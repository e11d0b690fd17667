"""``rlreg://`` URIs: ``rlreg://name/3`` (a version), ``rlreg://name@prod`` (an alias), ``rlreg://name``."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from registry.errors import InvalidNameError, NotFoundError
from registry.names import validate_alias, validate_name

SCHEME = "rlreg"
PREFIX = f"{SCHEME}://"


@dataclass(frozen=True)
class ModelRef:
    """A model name with a version, an alias, or neither (the latest version)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{PREFIX}{self.name}@{self.alias}"
        if self.version is not None:
            return f"{PREFIX}{self.name}/{self.version}"
        return f"{PREFIX}{self.name}"


def parse_uri(uri: str) -> ModelRef:
    """Parse ``rlreg://name[/N|@alias]`` into a ``ModelRef``; raise ``InvalidNameError`` if malformed."""
    if not isinstance(uri, str) or not uri.startswith(PREFIX):
        raise InvalidNameError(f"{uri!r} is not an rlreg:// URI (expected rlreg://name[/version|@alias])")
    return parse_ref(uri[len(PREFIX) :], uri=uri)


def parse_ref(ref: str, *, uri: str | None = None) -> ModelRef:
    """Parse ``name``, ``name/N`` or ``name@alias`` (a URI without its scheme)."""
    shown = uri if uri is not None else ref
    if "@" in ref:
        name, _, alias = ref.partition("@")
        _valid(name, shown)
        if "@" in alias or "/" in alias:
            raise InvalidNameError(f"{shown!r}: an alias ends the URI (rlreg://name@alias)")
        return ModelRef(name, alias=validate_alias(alias))
    head, sep, last = ref.rpartition("/")
    if sep and last.isdigit():
        return ModelRef(_valid(head, shown), version=_version(last, shown))
    return ModelRef(_valid(ref, shown))


def split_path(path: str, names: Collection[str]) -> tuple[ModelRef, str]:
    """Split a protocol-less path into the model it names and the path inside that model's checkpoint.

    ``names`` are the model names that exist: since a name may have several segments, the longest
    existing name that prefixes ``path`` wins. A segment with ``@`` always ends the reference.
    """
    segments = path.strip("/").split("/")
    for i, segment in enumerate(segments):
        if "@" in segment:
            ref = parse_ref("/".join(segments[: i + 1]), uri=PREFIX + path)
            return ref, "/".join(segments[i + 1 :])
    for k in range(len(segments), 0, -1):
        name = "/".join(segments[:k])
        if name in names:
            rest = segments[k:]
            if rest and rest[0].isdigit():
                return ModelRef(name, version=_version(rest[0], PREFIX + path)), "/".join(rest[1:])
            return ModelRef(name), "/".join(rest)
    raise NotFoundError(f"no model named by {PREFIX}{path}: no prefix of it is a registered model name")


def _valid(name: str, shown: str) -> str:
    try:
        return validate_name(name)
    except InvalidNameError as exc:
        raise InvalidNameError(f"{shown!r}: {exc}") from None


def _version(text: str, shown: str) -> int:
    version = int(text)
    if version < 1:
        raise InvalidNameError(f"{shown!r}: version {text} is not a version (versions start at 1)")
    return version
