"""storage: folders on fsspec URLs and a content-addressed, verified, cached tensor store.

Names are imported on first use (PEP 562): importing a light submodule (``storage.errors``) does
not pull in torch, so the command line's read commands never import it.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {  # submodule: the names it gives this package
    "storage.errors": (
        "IntegrityError InvalidDigestError InvalidManifestError InvalidTensorNameError "
        "ObjectNotFoundError StorageError StorageUnavailableError TensorNotInManifestError "
        "UnknownProtocolError UnsupportedDtypeError JSONDepthError NotAFileError StorageWriteError "
        "OfflineError NotCachedError"
    ),
    "storage.jsondepth": "MAX_JSON_DEPTH",
    "storage.location": "Location",
    "storage.manifest": "manifest_objects",
    "storage.progress": "ProgressCallback",
    "storage.store": "Store StoreStats VerifyReport",
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names.split()}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later reads are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(_WHERE)  # the public names (not this module's own imports)
