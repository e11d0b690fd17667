"""What changed between two versions of a model: tensors, spec, non-tensor state and metadata."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

Getter = Callable[[dict, list[str]], "dict[str, torch.Tensor]"]
_MISSING = "<missing>"


@dataclass(frozen=True)
class ModelDiff:
    """Tensors added, removed, changed (name → max abs difference) and unchanged; spec and metadata changes.

    A tensor whose dtype or shape changed has ``math.inf`` as its difference. ``spec_changes``,
    ``state_changes`` and ``metadata_changes`` map a dotted key to ``(value in a, value in b)``;
    a key present on one side only shows ``"<missing>"`` on the other.
    """

    name: str
    a: int
    b: int
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, float] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    spec_changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    state_changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    metadata_changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    shapes: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)

    @property
    def identical(self) -> bool:
        """True when nothing at all differs."""
        return not (
            self.added or self.removed or self.changed
            or self.spec_changes or self.state_changes or self.metadata_changes
        )

    def to_dict(self) -> dict:
        """A JSON-able dict (an infinite difference is written as the string ``"inf"``)."""
        return {
            "name": self.name, "a": self.a, "b": self.b,
            "added": list(self.added), "removed": list(self.removed),
            "changed": {k: (v if math.isfinite(v) else "inf") for k, v in self.changed.items()},
            "unchanged": list(self.unchanged),
            "spec_changes": {k: list(v) for k, v in self.spec_changes.items()},
            "state_changes": {k: list(v) for k, v in self.state_changes.items()},
            "metadata_changes": {k: list(v) for k, v in self.metadata_changes.items()},
        }

    def __str__(self) -> str:
        lines = [
            f"{self.name}: version {self.a} -> {self.b}",
            f"  tensors: {len(self.changed)} changed, {len(self.added)} added, "
            f"{len(self.removed)} removed, {len(self.unchanged)} unchanged",
        ]
        for key, delta in self.changed.items():
            shown = f"max |a-b| = {delta:.6g}" if math.isfinite(delta) else _shape_change(self, key)
            lines.append(f"  changed   {key}: {shown}")
        lines += [f"  added     {key}: {self.shapes.get(key, ('', ''))[1]}" for key in self.added]
        lines += [f"  removed   {key}: {self.shapes.get(key, ('', ''))[0]}" for key in self.removed]
        for label, changes in (
            ("spec", self.spec_changes), ("state", self.state_changes), ("metadata", self.metadata_changes)
        ):
            lines += [f"  {label:<9} {k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()]
        if self.identical:
            lines.append("  identical")
        return "\n".join(lines)


def _shape_change(d: ModelDiff, key: str) -> str:
    a, b = d.shapes.get(key, ("?", "?"))
    return f"{a} -> {b}"


def _describe(entry: Mapping) -> str:
    return f"{entry.get('dtype')}{list(entry.get('shape', []))}"


def diff_versions(
    name: str, a: int, b: int, side_a: Mapping, side_b: Mapping, get: Getter
) -> ModelDiff:
    """Compare two versions given as ``{"manifest", "spec", "state", "metadata"}`` dicts.

    Tensors whose manifest entries are equal are unchanged without being read; the others are read
    through ``get(manifest, names)`` and compared.
    """
    ta, tb = side_a["manifest"]["tensors"], side_b["manifest"]["tensors"]
    shapes = {k: (_describe(ta[k]) if k in ta else "", _describe(tb[k]) if k in tb else "") for k in {*ta, *tb}}
    common = sorted(set(ta) & set(tb))
    unchanged = [k for k in common if ta[k] == tb[k]]
    suspects = [k for k in common if ta[k] != tb[k]]
    changed: dict[str, float] = {}
    if suspects:
        xa, xb = get(side_a["manifest"], suspects), get(side_b["manifest"], suspects)
        for key in suspects:
            if same_bits(xa[key], xb[key]):
                unchanged.append(key)
            else:
                changed[key] = max_abs_diff(xa[key], xb[key])
    return ModelDiff(
        name=name, a=a, b=b,
        added=sorted(set(tb) - set(ta)), removed=sorted(set(ta) - set(tb)),
        changed=changed, unchanged=sorted(unchanged),
        spec_changes=dict_changes(side_a.get("spec"), side_b.get("spec")),
        state_changes=dict_changes(side_a.get("state"), side_b.get("state")),
        metadata_changes=dict_changes(side_a.get("metadata"), side_b.get("metadata")),
        shapes=shapes,
    )


def max_abs_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    """The largest absolute elementwise difference (NaN against a number is ``inf``; dtype or shape change too)."""
    if x.dtype != y.dtype or x.shape != y.shape:
        return math.inf
    if x.numel() == 0:
        return 0.0
    import torch

    xd, yd = x.to(torch.float64), y.to(torch.float64)
    delta = (xd - yd).abs()
    delta = torch.where(torch.isnan(xd) & torch.isnan(yd), torch.zeros_like(delta), delta)
    return float(torch.nan_to_num(delta, nan=math.inf).max())


def same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    """True when dtype, shape and every byte are equal."""
    if x.dtype != y.dtype or x.shape != y.shape:
        return False
    import torch

    bx = x.contiguous().reshape(-1).view(torch.uint8)
    by = y.contiguous().reshape(-1).view(torch.uint8)
    return torch.equal(bx, by)


def dict_changes(a: Any, b: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two nested JSON values, with ``(a, b)``."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: dict[str, tuple[Any, Any]] = {}
        for key in sorted({*a, *b}, key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            out.update(dict_changes(a.get(key, _MISSING), b.get(key, _MISSING), path))
        return out
    if a == b and type(a) is type(b):
        return {}
    return {prefix or "<root>": (a, b)}
