"""Paths of the web app read with the ``rlreg://`` grammar (``registry.uri``), the one reference parser.

``/models/team/p0`` is the model ``team/p0``; ``/models/team/p0/3`` and ``/models/team/p0@prod`` are
versions of it, ``/models/team/p0@latest`` its latest; what follows a version or alias
(``/api/v1/versions/team/p0/3/tensors/pi/0/weight``) is the path inside that version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry import uri

from rlreg.web.errors import BadParameterError


@dataclass(frozen=True)
class PathRef:
    """A model reference read from a URL path, and whatever follows it."""

    name: str
    version: int | None
    alias: str | None
    inner: str
    names_version: bool  # a version, an alias or ``@latest`` was written (not a bare model name)

    @property
    def spelled(self) -> str:
        """The reference as the CLI writes it: ``name``, ``name:3``, ``name@prod``."""
        if self.alias:
            return f"{self.name}@{self.alias}"
        return f"{self.name}:{self.version}" if self.version is not None else self.name


def read_path(path: str) -> PathRef:
    """Split a URL path into a model reference and the rest (``InvalidNameError`` when malformed)."""
    ref, inner = uri.split_path(path.strip("/"))
    head = path.strip("/")[: len(path.strip("/")) - len(inner)] if inner else path
    written = ref.version is not None or "@" in head
    return PathRef(ref.name, ref.version, ref.alias, inner, written)


def model_name(request: Any, param: str = "name") -> str:
    """The bare model name a request's path names (``BadParameterError`` if it also names a version, an
    alias or more: ``/models/NAME/3`` must not be read, or deleted, as the whole model)."""
    ref = read_path(request.path_params[param])
    if ref.names_version or ref.inner:
        raise BadParameterError(f"{request.url.path!r}: expected a model name, not a version or alias of one "
                                "(a version: /api/v1/versions/NAME/VERSION)")
    return ref.name


def model_url(name: str) -> str:
    """The page of a model."""
    return f"/models/{name}"


def version_url(name: str, version: int) -> str:
    """The page of a version."""
    return f"/models/{name}/{version}"
