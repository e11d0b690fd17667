"""storage: folders on fsspec URLs and a content-addressed, verified, cached tensor store."""

from storage.errors import (
    IntegrityError,
    InvalidManifestError,
    InvalidTensorNameError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    UnknownProtocolError,
    UnsupportedDtypeError,
)
from storage.location import Location

__all__ = [
    "IntegrityError",
    "InvalidManifestError",
    "InvalidTensorNameError",
    "Location",
    "ObjectNotFoundError",
    "StorageError",
    "StorageUnavailableError",
    "UnknownProtocolError",
    "UnsupportedDtypeError",
]
