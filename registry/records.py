"""What the registry hands back about models: ``ModelVersion`` and ``ModelInfo``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass(frozen=True)
class Deletion:
    """When, by whom and why a version (or its whole model) was deleted."""

    deleted_at: datetime
    reason: str
    actor: dict[str, Any] | None = None
    position: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``deleted_at`` as ISO 8601)."""
        return {"deleted_at": _iso(self.deleted_at), "reason": self.reason, "actor": self.actor,
                "position": self.position}


@dataclass(frozen=True)
class ModelVersion:
    """One recorded state snapshot of a model."""

    name: str
    version: int
    created_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    spec_digest: str = ""
    tensor_bytes: int = 0
    position: int = 0
    actor: dict[str, Any] | None = None  # who recorded it (``registry.actor``); None before actors were recorded
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    deleted: Deletion | None = None  # set for a deleted version (``versions(include_deleted=True)``)

    @property
    def uri(self) -> str:
        """``rlreg://name/version``."""
        return f"rlreg://{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``created_at`` as ISO 8601)."""
        return {
            "name": self.name,
            "version": self.version,
            "created_at": _iso(self.created_at),
            "metadata": self.metadata,
            "aliases": list(self.aliases),
            "spec_digest": self.spec_digest,
            "tensor_bytes": self.tensor_bytes,
            "position": self.position,
            "uri": self.uri,
            "actor": self.actor,
            "tags": dict(self.tags),
            "description": self.description,
            "deleted": self.deleted.to_dict() if self.deleted is not None else None,
        }


@dataclass(frozen=True)
class ModelInfo:
    """A model: its latest version, how many versions, its aliases (alias → version), when."""

    name: str
    latest_version: int | None
    versions: int
    aliases: dict[str, int] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (times as ISO 8601)."""
        return {
            "name": self.name,
            "latest_version": self.latest_version,
            "versions": self.versions,
            "aliases": dict(self.aliases),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "description": self.description,
        }
