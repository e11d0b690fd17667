"""Fixtures of the fault suite: an S3 fault proxy in front of moto, fast-failing clients, the registry toys."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "registry"))  # registry_toys, shared with the registry suite

from s3_fault_proxy import FaultPlan, FaultProxy  # noqa: E402


@pytest.fixture
def fault_proxy(s3_server, monkeypatch):
    """A ``FaultProxy`` in front of moto, with s3fs pointed at it (botocore retrying once, s3fs its own way)."""
    import s3fs

    with FaultProxy(s3_server, FaultPlan(seed=9)) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        monkeypatch.setenv("AWS_RETRY_MODE", "standard")
        s3fs.S3FileSystem.clear_instance_cache()
        yield proxy
        s3fs.S3FileSystem.clear_instance_cache()
