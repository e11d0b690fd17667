"""Fixtures: every storage contract runs on a local folder, ``memory://`` and S3 (moto over HTTP)."""

from __future__ import annotations

import pytest
import torch

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


def stored_bytes(store: Store) -> int:
    """Bytes held under the store's ``objects/`` folder, measured on the filesystem itself."""
    root = store.location.path + "/objects"
    try:
        found = store.fs.find(root, detail=True)
    except FileNotFoundError:
        return 0
    return sum(int(info["size"]) for info in found.values())


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype, shape and bytes (NaN-safe, -0.0-safe)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    return bytes(a.contiguous().reshape(-1).view(torch.uint8).numpy()) == bytes(
        b.contiguous().reshape(-1).view(torch.uint8).numpy()
    )


def count_requests(store: Store) -> list[int]:
    """A one-item list counting the HTTP requests the store's s3fs client sends from now on."""
    store.fs.connect()
    n = [0]

    def hook(**_):
        n[0] += 1

    store.fs.s3.meta.events.register("before-send.s3", hook)
    return n
