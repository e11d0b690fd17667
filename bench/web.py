"""The web app with 10,000 versions of one model: how long each page and API answer takes.

``python -m bench web [--quick]``, on a SQLite file and on PostgreSQL (a fresh database on
``RLREG_TEST_PG_URL``'s server, dropped afterwards; skipped with the reason when unreachable). Target:
the model's page (newest 100 versions and the chart) well under ``TARGET_MS``. The registry is built
once per backend: version 1 by a real
``snapshot``, the others appended as ``VersionRecorded`` events (same manifest, new metadata) through
the event store and its projector, which is what a snapshot appends too, minus the (deduplicated)
tensor writes; then ``ANALYZE``, as a real database's autovacuum would after such a fill. Requests go through the app's ASGI interface in this process (httpx), so the times
are the app's: registry reads, template rendering, the SVG chart; no network. Medians of several
rounds, the pages interleaved.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench.peers.peerlib import timing_row

NAME = "bench/web"
SIZES = {False: {"versions": 10_000, "rounds": 7}, True: {"versions": 1_000, "rounds": 3}}
BATCH = 500
TARGET_MS = 200.0


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


def paths(n: int) -> dict[str, str]:
    """The requests timed: every page a browser opens on this model, and the versions JSON."""
    return {
        f"model page ({n} versions: newest 100 + chart)": f"/models/{NAME}",
        "model page, sorted by -metadata.mean_return": f"/models/{NAME}?sort=-metadata.mean_return",
        "model page, where metadata.mean_return > 140": f"/models/{NAME}?where=metadata.mean_return%20%3E%20140",
        "model page, chart of loss, limit=1": f"/models/{NAME}?chart=loss&limit=1",
        "version page": f"/models/{NAME}/{n // 2}",
        "diff page (last two)": f"/diff/{NAME}",
        "versions JSON (newest 100)": f"/api/v1/versions/{NAME}?order_by=-version&limit=100",
        "events page (50 newest)": "/events",
        "models page": "/",
    }


def measure_backend(backend: str, where: Any, n: int, rounds: int) -> list[dict[str, Any]]:
    """Build ``n`` versions on one backend and time the pages (and ``Registry.versions`` calls)."""
    from bench.queries import analyze
    from registry import Registry
    from rlreg.web import create_app

    with where() as (db_url, storage_url):
        reg = Registry(db_url, storage_url)
        try:
            started = time.perf_counter()
            build(reg, n)
            analyze(reg)
            print(f"{backend}: built {n} versions in {time.perf_counter() - started:.1f} s", flush=True)
            times = measure(create_app(reg), paths(n), rounds)
            calls = {"Registry.versions(limit=100, order_by=-version)": lambda: reg.versions(NAME, order_by="-version", limit=100),
                     f"Registry.versions() of all {n}": lambda: reg.versions(NAME)}
            for case, call in calls.items():
                times[case] = []
                for _ in range(min(rounds, 3)):
                    start = time.perf_counter()
                    call()
                    times[case].append(time.perf_counter() - start)
        finally:
            reg.close()
    rows = []
    for case, secs in times.items():
        system = "registry" if case.startswith("Registry.") else "rlreg serve (ASGI)"
        r = timing_row(case, system, secs, versions=n, backend=backend)
        if case.startswith("model page ("):
            r.update(target_ms=TARGET_MS, within_target=r["value"] * 1000 < TARGET_MS)
        rows.append(r)
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """Build the registry on SQLite and PostgreSQL, time the pages; print a table and return the rows."""
    import sqlalchemy as sa

    from bench.queries import PG_ADMIN_URL, pg_url, sqlite_url

    size = SIZES[quick]
    rows = measure_backend("sqlite", sqlite_url, size["versions"], size["rounds"])
    try:
        rows += measure_backend("postgresql", pg_url, size["versions"], size["rounds"])
    except sa.exc.OperationalError as exc:
        print(f"postgresql skipped: not reachable at {PG_ADMIN_URL} ({exc.__class__.__name__})")
    print(f"{'backend':<11} {'case':<56} {'median':>10} {'best':>10}")
    for r in rows:
        flag = "" if "within_target" not in r else ("  ok" if r["within_target"] else f"  OVER {TARGET_MS:g} ms")
        print(f"{r['backend']:<11} {r['case']:<56} {r['value'] * 1000:>8.1f} ms {r['best'] * 1000:>7.1f} ms{flag}")
    return rows


if __name__ == "__main__":
    import sys

    run(quick="--quick" in sys.argv[1:])
