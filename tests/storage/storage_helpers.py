"""Helpers shared by the storage tests (a uniquely named module: ``conftest`` names clash across folders)."""

from __future__ import annotations

import os

import torch

from storage import Store


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


def durability_violations(calls: list[tuple[str, str]], path: str) -> list[str]:
    """What is wrong with the order of calls that put ``path`` in place (``[]``: durable)."""
    renames = [i for i, (op, arg) in enumerate(calls) if op == "replace" and arg.endswith(f" -> {path}")]
    if len(renames) != 1:
        return [f"{len(renames)} renames to {path}"]
    i = renames[0]
    tmp = calls[i][1].split(" -> ")[0]
    out = []
    if ("fsync", tmp) not in calls[:i] and ("dsync", tmp) not in calls[:i]:  # (O_DSYNC: each write synced)
        out.append(f"{tmp} not fsynced before its rename")
    if ("fsync", os.path.dirname(path)) not in calls[i + 1 :]:
        out.append(f"folder {os.path.dirname(path)} not fsynced after the rename")
    return out
