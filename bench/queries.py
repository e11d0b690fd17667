"""The query benchmark: ``versions(name, ...)`` on one model with 10,000 versions (target: < 50 ms).

On a SQLite file and on PostgreSQL (a fresh database on ``RLREG_TEST_PG_URL``'s server, default
127.0.0.1:5432, dropped afterwards; skipped with a printed reason when unreachable). The versions are
recorded as the registry records them (``VersionRecorded`` events through the projector, each with the
manifest, state and spec of one real PPO CartPole snapshot, and its own metadata; every tenth tagged
``stage=eval``), appended 500 at a time so that filling takes seconds, not a snapshot per version;
then, on PostgreSQL, ``ANALYZE`` (``registry.db.analyze``): autovacuum does the same soon after such a
fill, and without statistics the planner sorted by metadata with nested loops (seconds, not ms).
Each query is timed as the median of several rounds, the queries interleaved.
``run(quick)`` returns the rows; ``python -m bench.queries [--quick]`` prints them.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from registry import Registry
from registry.eventstore import NewEvent
from registry.projections import TAGS_SET, VERSION_RECORDED

PG_ADMIN_URL = os.environ.get("RLREG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TARGET_MS = 50.0
SIZES = {True: {"versions": 1000, "rounds": 5}, False: {"versions": 10_000, "rounds": 15}}
BATCH = 500
QUERIES: dict[str, dict[str, Any]] = {
    "first 20": {"limit": 20},
    "latest 20": {"order_by": "-version", "limit": 20},
    "where metadata, 20": {"where": "metadata.mean_return > 400", "limit": 20},
    "where metadata and tag, best 20": {
        "where": 'metadata.mean_return > 100 and tags.stage = "eval"', "order_by": "-metadata.mean_return",
        "limit": 20,
    },
    "best 20 by metadata": {"order_by": "-metadata.mean_return", "limit": 20},
    "where, all matches (~1%)": {"where": "metadata.mean_return > 495"},
}


def row(case: str, system: str, metric: str, value: float, unit: str, **detail: Any) -> dict[str, Any]:
    """One measurement, in the shape of bench/peers/peerlib.row."""
    return {"case": case, "system": system, "metric": metric, "value": value, "unit": unit, **detail}


def fill(reg: Registry, name: str, count: int, seed: int = 0) -> None:
    """Record ``count`` versions of ``name`` (after one real snapshot) as the registry records them."""
    from rlmodule import RLModuleSpec
    from rlmodule.ppo import PPOCatalog, PPOTorchRLModule
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    module = RLModuleSpec(module_class=PPOTorchRLModule, observation_space=env.observation_space,
                          action_space=env.action_space, model_config_dict={"hidden": [64, 64]},
                          catalog_class=PPOCatalog).build()
    first = reg.snapshot(name, module, {"mean_return": 0.0, "step": 0})
    manifest = reg.manifest(name, first.version)
    rng = random.Random(seed)
    version = first.version
    while version < count:
        batch = []
        for _ in range(min(BATCH, count - version)):
            version += 1
            metadata = {"mean_return": round(rng.uniform(0, 500), 3), "step": version * 1000, "env": "CartPole-v1",
                        "lr": 3e-4, "eval": {"episodes": 10}}
            batch.append(NewEvent(VERSION_RECORDED, {
                "version": version, "spec_digest": first.spec_digest, "manifest": manifest, "state": {},
                "metadata": metadata, "tensor_bytes": first.tensor_bytes}))
            if version % 10 == 0:
                batch.append(NewEvent(TAGS_SET, {"version": version, "tags": {"stage": "eval"}}))
        reg.event_store.append(name, batch)


def analyze(reg: Registry) -> None:
    """``ANALYZE`` on PostgreSQL after a bulk fill: what autovacuum does soon after one (SQLite has no
    such daemon and is left as it is)."""
    from registry import db

    db.analyze(reg.event_store.engine)


def time_queries(reg: Registry, name: str, rounds: int) -> dict[str, float]:
    """Median seconds of each query of ``QUERIES`` over ``rounds`` interleaved rounds."""
    times: dict[str, list[float]] = {case: [] for case in QUERIES}
    for case, kwargs in QUERIES.items():  # warm the caches and the connection pool
        reg.versions(name, **kwargs)
    for _ in range(rounds):
        for case, kwargs in QUERIES.items():
            start = time.perf_counter()
            reg.versions(name, **kwargs)
            times[case].append(time.perf_counter() - start)
    return {case: statistics.median(ts) for case, ts in times.items()}


@contextmanager
def sqlite_url() -> Iterator[tuple[str, str]]:
    """A SQLite file and a blob folder in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="rlreg-bench-queries-") as tmp:
        yield f"sqlite:///{tmp}/rlreg.db", f"{tmp}/blobs"


@contextmanager
def pg_url() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database (dropped afterwards) and a blob folder."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    db = f"rlreg_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{db}"')
        with tempfile.TemporaryDirectory(prefix="rlreg-bench-queries-") as tmp:
            yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db, f"{tmp}/blobs"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.dispose()


def measure(backend: str, where: Callable[[], Any], count: int, rounds: int) -> list[dict[str, Any]]:
    """Fill one model with ``count`` versions on ``backend`` and time every query."""
    with where() as (db_url, storage_url):
        reg = Registry(db_url, storage_url)
        try:
            started = time.perf_counter()
            fill(reg, "bench/queries", count)
            analyze(reg)
            filled = time.perf_counter() - started
            medians = time_queries(reg, "bench/queries", rounds)
        finally:
            reg.close()
    rows = [row("fill", backend, "seconds", round(filled, 2), "s", versions=count)]
    for case, seconds in medians.items():
        ms = seconds * 1000
        rows.append(row(f"versions(): {case}", backend, "median", round(ms, 2), "ms", versions=count,
                        rounds=rounds, target_ms=TARGET_MS, within_target=ms < TARGET_MS, query=QUERIES[case]))
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure on SQLite and PostgreSQL; prints a table and returns the rows."""
    size = SIZES[quick]
    rows = measure("sqlite", sqlite_url, size["versions"], size["rounds"])
    try:
        rows += measure("postgresql", pg_url, size["versions"], size["rounds"])
    except sa.exc.OperationalError as exc:
        print(f"postgresql skipped: not reachable at {PG_ADMIN_URL} ({exc.__class__.__name__})")
    for r in rows:
        flag = "" if "within_target" not in r else ("  ok" if r["within_target"] else f"  OVER {TARGET_MS:g} ms")
        print(f"{r['system']:<11} {r['case']:<48} {r['value']:>9} {r['unit']}{flag}")
    return rows


if __name__ == "__main__":
    run(quick="--quick" in sys.argv[1:])
