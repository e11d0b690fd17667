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
    """A ``FaultProxy`` in front of moto, with s3fs pointed at it: botocore retries once, s3fs twice (not its
    default 5, whose backoffs multiply botocore's: 1-2 s per failing call instead of 5-9 s)."""
    import s3fs

    with FaultProxy(s3_server, FaultPlan(seed=9)) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        monkeypatch.setenv("AWS_RETRY_MODE", "standard")
        monkeypatch.setattr(s3fs.S3FileSystem, "retries", 2)  # a class attribute: s3fs's way to configure it
        s3fs.S3FileSystem.clear_instance_cache()
        yield proxy
        s3fs.S3FileSystem.clear_instance_cache()
