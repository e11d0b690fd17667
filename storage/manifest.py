"""Manifests: the JSON record of one ``put`` (names -> dtype, shape, size, digest, object)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storage import digest
from storage.errors import InvalidManifestError
from storage.dtypes import FORMAT_DTYPES, RawTensor, manifest_dtype

FORMAT = "rlreg.manifest/1"
_FIELDS = ("digest", "dtype", "nbytes", "object", "shape")
_FIELD_SET = frozenset(_FIELDS)
_DTYPES = frozenset(manifest_dtype(d) for d in FORMAT_DTYPES)


def build(
    raws: Mapping[str, RawTensor],
    tensor_digests: Mapping[str, str],
    object_of: Mapping[str, str],
    object_sizes: Mapping[str, int],
) -> dict[str, Any]:
    """The manifest of tensors ``raws`` stored in objects ``object_of[tensor digest]``."""
    tensors = {}
    for name in sorted(raws):
        raw, d = raws[name], tensor_digests[name]
        tensors[name] = {
            "digest": d,
            "dtype": manifest_dtype(raw.dtype),
            "nbytes": raw.nbytes,
            "object": object_of[d],
            "shape": list(raw.shape),
        }
    objects = {o: {"nbytes": object_sizes[o]} for o in sorted(set(object_of[tensor_digests[n]] for n in raws))}
    return {"format": FORMAT, "objects": objects, "tensors": tensors}


def manifest_objects(manifest: Mapping[str, Any]) -> set[str]:
    """The digests of every object ``manifest`` references."""
    return {entry["object"] for entry in check(manifest)["tensors"].values()}


def check(manifest: Any) -> Mapping[str, Any]:
    """Return ``manifest`` if well formed, else raise ``InvalidManifestError`` naming the fault."""
    if not isinstance(manifest, Mapping):
        raise InvalidManifestError(f"a manifest is a dict, not a {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise InvalidManifestError(f"manifest format {manifest.get('format')!r} is not {FORMAT!r}")
    tensors = manifest.get("tensors")
    if not isinstance(tensors, Mapping):
        raise InvalidManifestError("manifest has no 'tensors' dict")
    for name, entry in tensors.items():
        _check_entry(name, entry)
    return manifest


def _check_entry(name: Any, entry: Any) -> None:
    if not isinstance(entry, Mapping) or not _FIELD_SET <= entry.keys():
        raise InvalidManifestError(f"manifest entry {name!r} lacks one of {', '.join(_FIELDS)}")
    if not (digest.is_digest(entry["digest"]) and digest.is_digest(entry["object"])):
        raise InvalidManifestError(f"manifest entry {name!r} has a malformed digest")
    if entry["dtype"] not in _DTYPES:
        raise InvalidManifestError(f"manifest entry {name!r} has unknown dtype {entry['dtype']!r}")
    shape = entry["shape"]
    if type(shape) is not list or not all(type(s) is int and s >= 0 for s in shape):
        raise InvalidManifestError(f"manifest entry {name!r} has a malformed shape {shape!r}")
