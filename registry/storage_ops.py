"""Naming the registry operation a storage failure interrupted (``snapshot of 'pol'``, ``load of 'pol' 3``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from storage import StorageUnavailableError


@contextmanager
def during(operation: str) -> Iterator[None]:
    """Re-raise a ``StorageUnavailableError`` (after s3fs's retries) as one naming ``operation`` too."""
    try:
        yield
    except StorageUnavailableError as exc:
        if str(exc).startswith(f"{operation}: "):
            raise
        raise StorageUnavailableError(f"{operation}: {exc}") from exc
