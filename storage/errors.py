"""The storage branch of rlreg's error tree.

```
StorageError
├── ObjectNotFoundError        (FileNotFoundError)   a file or object is not there
├── IntegrityError             (ValueError)          stored bytes do not match their digest
├── UnsupportedDtypeError      (TypeError)           a tensor or array that cannot be stored
├── InvalidTensorNameError     (TypeError)           a tensor name that is not a non-empty string
├── InvalidManifestError       (ValueError)          a manifest that is not one this store wrote
├── InvalidDigestError         (ValueError)          a string that is not a digest
├── TensorNotInManifestError   (LookupError)         a name asked of get() that the manifest lacks
├── UnknownProtocolError       (ValueError)          a URL whose fsspec protocol is unknown
├── StorageUnavailableError    (ConnectionError)     unreachable endpoint, missing bucket/credentials
├── InvalidSettingError        (ValueError)          an RLREG_* variable whose value is not understood
├── StorageWriteError          (OSError)             a write refused: disk full, read-only, not a folder
├── NotAFileError              (ValueError)          a folder, FIFO, device or socket where a file belongs
├── JSONDepthError             (ValueError)          JSON nested deeper than ``MAX_JSON_DEPTH`` levels
└── OfflineError                                     RLREG_OFFLINE=1: the bucket or database is not contacted
    └── NotCachedError         (LookupError)         what an offline load needs is not in the local cache
```
"""

from __future__ import annotations


class StorageError(Exception):
    """Root of every error raised by ``storage``."""


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """A file or content-addressed object is not where it should be."""


class IntegrityError(StorageError, ValueError):
    """Bytes read from storage or the cache do not match their digest."""


# What a damaged object's message ends with: how to put it right (a front end may say it its own way).
REPAIR_HINT = "run Store.verify(quarantine=True) to move it aside; the next put of these tensors then rewrites it"


class UnsupportedDtypeError(StorageError, TypeError):
    """A tensor or array whose dtype (or layout) cannot be stored."""


class InvalidTensorNameError(StorageError, TypeError):
    """A tensor name that is not a non-empty string."""


class InvalidManifestError(StorageError, ValueError):
    """A manifest that is malformed or not of a known format."""


class UnknownProtocolError(StorageError, ValueError):
    """A storage URL whose protocol fsspec does not know (or whose backend is not installed)."""


class StorageUnavailableError(StorageError, ConnectionError):
    """The storage cannot be reached: no such bucket, no endpoint, missing or bad credentials."""


class InvalidDigestError(StorageError, ValueError):
    """A string that is not a digest this package makes."""


class TensorNotInManifestError(StorageError, LookupError):
    """A tensor name asked of ``get`` that the manifest does not hold."""


class InvalidSettingError(StorageError, ValueError):
    """An ``RLREG_*`` environment variable whose value is not understood (``storage.config``)."""


class NotAFileError(StorageError, ValueError):
    """A folder, FIFO, device or socket where a regular file belongs (refused before any read)."""


class JSONDepthError(StorageError, ValueError):
    """JSON (a file, a safetensors header, metadata) nested deeper than ``storage.MAX_JSON_DEPTH``."""


class StorageWriteError(StorageError, OSError):
    """A write the filesystem refused: no space left, a read-only filesystem, a file where a folder belongs."""


class OfflineError(StorageError):
    """``RLREG_OFFLINE=1`` (or ``offline=True``): an operation that needs the bucket or the database,
    refused without contacting either (writes, listings, anything but loads of cached versions)."""


class NotCachedError(OfflineError, LookupError):
    """Offline, a version, alias or object that the local cache does not hold (load it once online first)."""
