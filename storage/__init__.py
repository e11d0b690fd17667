"""storage: folders on fsspec URLs and a content-addressed, verified, cached tensor store."""

from storage.errors import (
    IntegrityError,
    InvalidDigestError,
    InvalidManifestError,
    InvalidTensorNameError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    TensorNotInManifestError,
    UnknownProtocolError,
    UnsupportedDtypeError,
)
from storage.location import Location
from storage.manifest import manifest_objects
from storage.progress import ProgressCallback
from storage.store import Store, StoreStats, VerifyReport

__all__ = [
    "IntegrityError",
    "InvalidDigestError",
    "InvalidManifestError",
    "InvalidTensorNameError",
    "Location",
    "ObjectNotFoundError",
    "ProgressCallback",
    "Store",
    "StoreStats",
    "StorageError",
    "StorageUnavailableError",
    "TensorNotInManifestError",
    "UnknownProtocolError",
    "UnsupportedDtypeError",
    "VerifyReport",
    "manifest_objects",
]
