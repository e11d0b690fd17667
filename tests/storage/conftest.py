"""Fixtures: every storage contract runs on a local folder, ``memory://`` and S3 (moto over HTTP)."""

from __future__ import annotations

import pytest
from storage import Store


@pytest.fixture(params=["local", "memory", "s3"])
def store_url(request, tmp_path) -> str:
    """A fresh, empty storage URL on each backend."""
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "memory":
        return "memory://store"
    return request.getfixturevalue("s3_bucket") + "/store"


@pytest.fixture
def store(store_url, tmp_path) -> Store:
    """A fresh Store on each backend, with its own read cache."""
    return Store(store_url, cache_dir=str(tmp_path / "cache"))
