"""storage: folders on fsspec URLs and a content-addressed, verified, cached tensor store."""

from storage.errors import (
    IntegrityError,
    InvalidDigestError,
    InvalidManifestError,
    InvalidTensorNameError,
    JSONDepthError,
    NotAFileError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    StorageWriteError,
    TensorNotInManifestError,
    UnknownProtocolError,
    UnsupportedDtypeError,
)
from storage.jsondepth import MAX_JSON_DEPTH
from storage.location import Location
from storage.manifest import manifest_objects
from storage.progress import ProgressCallback
from storage.store import Store, StoreStats, VerifyReport

__all__ = [
    "IntegrityError",
    "InvalidDigestError",
    "InvalidManifestError",
    "InvalidTensorNameError",
    "JSONDepthError",
    "Location",
    "MAX_JSON_DEPTH",
    "NotAFileError",
    "ObjectNotFoundError",
    "ProgressCallback",
    "Store",
    "StoreStats",
    "StorageError",
    "StorageUnavailableError",
    "StorageWriteError",
    "TensorNotInManifestError",
    "UnknownProtocolError",
    "UnsupportedDtypeError",
    "VerifyReport",
    "manifest_objects",
]
