"""A process that puts one deterministic snapshot (for the concurrent-writers test; spawn-importable)."""

from __future__ import annotations

import json

import torch

from storage import Store


def snapshot(seed: int = 7) -> dict[str, torch.Tensor]:
    """The same tensors in every process: large ones (own objects) and many small ones (packed)."""
    g = torch.Generator().manual_seed(seed)
    state = {f"w{i}": torch.randn(200, 200, generator=g) for i in range(4)}
    return state | {f"b{i}": torch.randn(64, generator=g) for i in range(200)}


def write(urls: list[str], cache_dir: str, barrier, results) -> None:
    """For each URL: wait for the others, then put the snapshot and report its manifest as JSON; then,
    all at once again, read it back (from S3: into the shared cache, which only reads fill)."""
    state = snapshot()
    for url in urls:
        store = Store(url, cache_dir=cache_dir)
        barrier.wait(timeout=120)
        m = store.put(state)
        results.put((url, json.dumps(m, sort_keys=True)))
        barrier.wait(timeout=120)
        store.get(m)
