"""The web app with 10,000 versions of one model: how long each page and API answer takes.

``python -m bench web [--quick]``. The registry is built once per run: version 1 by a real
``snapshot``, the others appended as ``VersionRecorded`` events (same manifest, new metadata) through
the event store and its projector, which is what a snapshot appends too, minus the (deduplicated)
tensor writes. Requests go through the app's ASGI interface in this process (httpx), so the times
are the app's: registry reads, template rendering, the SVG chart; no network. Medians of several
rounds, the pages interleaved.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.peers.peerlib import timing_row

NAME = "bench/web"
SIZES = {False: {"versions": 10_000, "rounds": 7}, True: {"versions": 1_000, "rounds": 3}}
BATCH = 500


def build(reg: Any, count: int) -> None:
    """``count`` versions of ``NAME`` with ``mean_return``, ``iteration`` and ``loss`` metadata."""
    import gymnasium as gym
    import numpy as np

    from registry.eventstore import NewEvent
    from registry.projections import VERSION_RECORDED
    from rlmodule import RLModuleSpec
    from rlmodule.ppo import PPOCatalog, PPOTorchRLModule

    spec = RLModuleSpec(module_class=PPOTorchRLModule, catalog_class=PPOCatalog,
                        observation_space=gym.spaces.Box(-1.0, 1.0, (8,), np.float32),
                        action_space=gym.spaces.Discrete(4), model_config_dict={"fcnet_hiddens": [64, 64]})
    first = reg.snapshot(NAME, spec.build(), metadata=_metadata(1))
    payload = reg.event_store.read_stream(NAME)[-1].payload
    for start in range(2, count + 1, BATCH):
        versions = range(start, min(start + BATCH, count + 1))
        events = [NewEvent(VERSION_RECORDED, {**payload, "version": v, "metadata": _metadata(v)}) for v in versions]
        reg.event_store.append(NAME, events, expected_version=reg.event_store.stream_version(NAME))
    assert reg.version(NAME).version == count and first.version == 1
    reg.set_alias(NAME, "best", count // 2)


def _metadata(v: int) -> dict[str, Any]:
    return {"mean_return": round(100 + 50 * ((v * 7919) % 101) / 101 + v / 100, 3), "iteration": v * 10,
            "loss": round(1 / v, 6)}


def measure(app: Any, paths: dict[str, str], rounds: int) -> dict[str, list[float]]:
    """Seconds per request of each path, ``rounds`` times, the paths taken in turn."""

    async def go() -> dict[str, list[float]]:
        transport = httpx.ASGITransport(app=app)
        out: dict[str, list[float]] = {case: [] for case in paths}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for case, path in paths.items():  # warm-up: templates compiled, caches filled
                assert (await client.get(path)).status_code == 200, path
            for _ in range(rounds):
                for case, path in paths.items():
                    start = time.perf_counter()
                    r = await client.get(path)
                    out[case].append(time.perf_counter() - start)
                    assert r.status_code == 200, (path, r.text[:300])
        return out

    return asyncio.run(go())


def run(quick: bool) -> list[dict[str, Any]]:
    """Build the registry, time the pages; print a table and return the rows."""
    from registry import Registry
    from rlreg.web import create_app

    size = SIZES[quick]
    n = size["versions"]
    with tempfile.TemporaryDirectory(prefix="rlreg-bench-web-") as tmp:
        reg = Registry(f"sqlite:///{Path(tmp) / 'rlreg.db'}", str(Path(tmp) / "blobs"))
        started = time.perf_counter()
        build(reg, n)
        print(f"built {n} versions in {time.perf_counter() - started:.1f} s")
        paths = {
            f"model page ({n} versions: newest 100 + chart of all)": f"/models/{NAME}",
            f"model page, chart only ({n} versions, limit=1)": f"/models/{NAME}?limit=1",
            "version page": f"/models/{NAME}/{n // 2}",
            f"versions JSON (all {n})": f"/api/v1/versions/{NAME}",
            "events page (50 newest)": "/events",
            "models page": "/",
        }
        times = measure(create_app(reg), paths, size["rounds"])
        versions_call = []
        for _ in range(size["rounds"]):
            start = time.perf_counter()
            reg.versions(NAME)
            versions_call.append(time.perf_counter() - start)
        reg.close()
    rows = [timing_row(case, "rlreg serve (ASGI)", secs, versions=n) for case, secs in times.items()]
    rows.append(timing_row(f"Registry.versions() alone ({n})", "registry", versions_call, versions=n))
    print(f"{'case':<60} {'median':>10} {'best':>10}")
    for r in rows:
        print(f"{r['case']:<60} {r['value'] * 1000:>8.0f} ms {r['best'] * 1000:>7.0f} ms")
    return rows


if __name__ == "__main__":
    run(quick=False)
