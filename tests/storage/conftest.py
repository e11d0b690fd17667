"""The ``store_url`` fixture: every storage contract runs on a local folder, memory:// and S3 (moto)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["local", "memory", "s3"])
def store_url(request, tmp_path) -> str:
    """A fresh, empty storage URL on each backend."""
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "memory":
        return f"memory://store-{request.node.name.__hash__() & 0xFFFF:x}"
    return request.getfixturevalue("s3_bucket") + "/store"
