"""storage: folders on fsspec URLs and a content-addressed, verified, cached tensor store.

Names are imported on first use (PEP 562): importing a light submodule (``storage.errors``) does
not pull in torch, so the command line's read commands never import it.
"""

from __future__ import annotations

from storage import lazy

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
__all__, __getattr__, __dir__ = lazy.exports(__name__, _NAMES)
