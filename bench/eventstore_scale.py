"""The event store at 10k, 100k and 1M events: reads that must stay flat, and a full projection rebuild.

On a SQLite file and on PostgreSQL (a fresh database, dropped afterwards), the log is filled in
appends of 1,000 events; at each size it times (median of ``READS`` calls) ``head()``,
``events(after=head/2, limit=1000)`` and ``read_stream`` of a 100-event stream written first, then
``rebuild_projections`` once at the largest size. 1% of the events are the registry's own
(a spec and nine versions per model, which the projector applies), the rest are ``Tick`` events it
skips. ``python -m bench.eventstore_scale [--quick]`` (quick: 10k and 100k only).
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from typing import Any

from bench.eventstore import _postgres_urls, _sqlite_urls, row
from registry.eventstore import EventStore, NewEvent
from registry.projections import SPEC_RECORDED, VERSION_RECORDED, Projections, spec_digest

SIZES = {True: (10_000, 100_000), False: (10_000, 100_000, 1_000_000)}
BATCH = 1000
READS = 21
SPEC = {"class": "bench.Toy", "config": {"hidden": [64, 64]}}


def _model_events(versions: int = 9) -> list[NewEvent]:
    digest = spec_digest(SPEC)
    made = [NewEvent(SPEC_RECORDED, {"spec": SPEC, "spec_digest": digest})]
    for v in range(1, versions + 1):
        made.append(NewEvent(VERSION_RECORDED, {
            "version": v, "spec_digest": digest, "manifest": {"format": "rlreg.manifest/1", "tensors": {}},
            "state": {"step": v}, "metadata": {"mean_return": float(v)}, "tensor_bytes": 0,
        }))
    return made


def fill_to(store: EventStore, target: int) -> float:
    """Append until the head reaches ``target``; returns the seconds it took."""
    start = time.perf_counter()
    while (head := store.head()) < target:
        ticks = min(BATCH - 10, target - head)
        store.append(f"ticks-{uuid.uuid4().hex[:12]}", [NewEvent("Tick", {"i": i}) for i in range(ticks)])
        if store.head() + 10 <= target:
            store.append(f"model-{uuid.uuid4().hex[:12]}", _model_events(), expected_version=0)
    return time.perf_counter() - start


def median_ms(fn: Any) -> float:
    """Median milliseconds of ``READS`` calls."""
    times = []
    for _ in range(READS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def run_backend(backend: str, url: str, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """The read curve and the rebuild on one backend."""
    rows = []
    with EventStore(url, projector=Projections()) as store:
        store.append("probe", [NewEvent("Tick", {"i": i}) for i in range(100)])
        for size in sizes:
            seconds = fill_to(store, size)
            print(f"  {backend}: filled to {size:,} in {seconds:.1f} s", flush=True)
            middle = store.head() // 2
            for case, fn in (
                ("head()", store.head),
                ("events(after=head/2, limit=1000)", lambda: store.events(middle, limit=1000)),
                ("read_stream (100 events)", lambda: store.read_stream("probe")),
            ):
                rows.append(row(case, f"rlreg/{backend}", f"median at {size:,} events", median_ms(fn), "ms",
                                events=size))
        start = time.perf_counter()
        replayed = store.rebuild_projections()
        rows.append(row(f"rebuild_projections ({replayed:,} events)", f"rlreg/{backend}", "time",
                        time.perf_counter() - start, "s", events=replayed))
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """Both backends; returns (and prints) the rows."""
    sizes, rows = SIZES[quick], []
    with _sqlite_urls() as urls:
        rows += _printed(run_backend("sqlite", urls["rlreg"], sizes))
    with _postgres_urls() as urls:
        if urls is not None:
            rows += _printed(run_backend("postgresql", urls["rlreg"], sizes))
    return rows


def _printed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        print(f"{r['system']:>20}  {r['case']:<36} {r['metric']:<28} {r['value']:10.3f} {r['unit']}", flush=True)
    return rows


if __name__ == "__main__":
    run("--quick" in sys.argv[1:])
