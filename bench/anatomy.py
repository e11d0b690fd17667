"""Where a synchronous snapshot's time goes: ``python -m bench anatomy [--quick]``.

Not a ratio against a peer (``bench.snapshots`` has those) but the evidence behind them: for the
1 MiB and 100 MiB cases of ``bench.snapshots``, when each step of ``Registry.snapshot`` ends (the
median over rounds, in ms from the call), read from wrappers put around the store's object writes,
``os.writev``, the append's transaction and the dialect's commit for the run only; and the
writes alone, as the store makes them (``local_atomic_write`` of the case's objects on the store's
writer threads) beside the peer's (one ``save_file``-sized file, fsynced with its folder), taking
turns. A step that ends later than the writes alone would is time spent elsewhere: hashing, SQL,
hand-offs between threads, or another tenant's use of the cores.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

from bench.snapshots import CASES, Case, drop_file_pages, frozen, fsync_file, perturb

# (mark, what has happened by then), in the order they happen in a small snapshot
STEPS = [
    ("put", "checks, spec, state split: the store's put starts"),
    ("write started", "hashed and encoded: the first object's bytes go out"),
    ("put returned", "every write under way: the manifest is known"),
    ("sql", "the append's transaction begins"),
    ("waits for writes", "the append waits for the writes (small snapshots: its SQL is done)"),
    ("bytes out", "the last object's bytes are stored (O_DSYNC)"),
    ("stored", "the last object is renamed and its folder fsynced"),
    ("commit", "the commit starts"),
    ("committed", "the commit (and its fsync) is done"),
    ("returned", "snapshot() returns"),
]


class _Marks:
    """Times of the marks of one snapshot, from its call (first and last of each)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seen: list[tuple[str, float]] = []

    def __call__(self, mark: str) -> None:
        self.seen.append((mark, time.perf_counter()))  # (list.append: safe from the writer threads)

    def first_and_last(self) -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        for mark, at in self.seen:
            ms = 1000 * (at - self.start)
            out[mark] = (out[mark][0], ms) if mark in out else (ms, ms)
        return out


@contextlib.contextmanager
def _instrumented(case: Case, mark: _Marks) -> Iterator[None]:
    """Wrappers that call ``mark`` at each step, on this case's registry, for the block only."""
    import sqlalchemy as sa

    from storage import filesystems
    from storage import store as store_module

    atomic_write, writev = filesystems.local_atomic_write, os.writev
    begin_put, wait = store_module.Store.begin_put, store_module.PendingPut.wait
    engine = case.reg.event_store.engine
    do_commit = engine.dialect.do_commit

    def timed_write(path: str, buffers: Any, **kw: Any) -> None:
        started = kw.get("started")
        kw["started"] = lambda: (mark("write started"), started and started())
        atomic_write(path, buffers, **kw)
        mark("stored")

    def timed_begin_put(self: Any, *a: Any, **k: Any) -> Any:
        mark("put")
        try:
            return begin_put(self, *a, **k)
        finally:
            mark("put returned")

    def timed_commit(conn: Any) -> None:
        mark("commit")
        do_commit(conn)
        mark("committed")

    def on_begin(conn: Any) -> None:
        mark("sql")

    patches = [
        mock.patch.object(filesystems, "local_atomic_write", timed_write),
        mock.patch.object(os, "writev", lambda fd, b: (writev(fd, b), mark("bytes out"))[0]),
        mock.patch.object(store_module.Store, "begin_put", timed_begin_put),
        mock.patch.object(store_module.PendingPut, "wait", lambda self: (mark("waits for writes"), wait(self))[1]),
        mock.patch.object(engine.dialect, "do_commit", timed_commit),
    ]
    sa.event.listen(engine, "begin", on_begin)
    try:
        with contextlib.ExitStack() as stack:
            for p in patches:
                stack.enter_context(p)
            yield
    finally:
        sa.event.remove(engine, "begin", on_begin)


def timeline(case: Case, rounds: int) -> list[dict[str, Any]]:
    """Median ms from the call at which each step ended (first and last time it did), over ``rounds``."""
    mark = _Marks()
    per_round: list[dict[str, tuple[float, float]]] = []
    case.reg.snapshot("m", case.module)  # (the spec recorded, the folders made: as every later snapshot)
    with _instrumented(case, mark), frozen():
        for i in range(rounds):
            perturb(case.module, i)
            os.sync()
            mark.seen.clear()
            mark.start = time.perf_counter()
            case.reg.snapshot("m", case.module)
            mark("returned")
            per_round.append(mark.first_and_last())
    rows = []
    for step, meaning in STEPS:
        got = [r[step] for r in per_round if step in r]
        if not got:
            continue
        first, last = statistics.median(g[0] for g in got), statistics.median(g[1] for g in got)
        rows.append({"case": case.name, "step": step, "meaning": meaning, "first_ms": first, "last_ms": last,
                     "rounds": len(got)})
    return sorted(rows, key=lambda r: r["first_ms"])


def writes(case: Case, rounds: int) -> list[dict[str, Any]]:
    """The case's bytes written durably as the store writes its objects, and as the peer writes one file."""
    from storage import filesystems
    from storage import store as store_module

    sizes = _object_sizes(case)
    blobs = [bytearray(os.urandom(n)) for n in sizes]
    folder = case.work / "writes"
    subfolders = [folder / f"{i:02x}" for i in range(len(blobs))]
    for sub in subfolders:
        sub.mkdir(parents=True, exist_ok=True)
    count = itertools.count()

    def one(i: int) -> None:
        path = str(subfolders[i] / f"o{next(count)}")
        filesystems.local_atomic_write(path, [memoryview(blobs[i])], durable=True, direct=True)

    pool = ThreadPoolExecutor(store_module._LOCAL_WRITERS)  # (started once, as the store's writers are)
    list(pool.map(lambda _: None, range(store_module._LOCAL_WRITERS)))

    def as_the_store() -> None:
        list(pool.map(one, range(len(blobs))))

    def as_the_peer() -> None:
        path = folder / f"peer{next(count)}"
        with open(path, "wb") as f:
            for b in blobs:
                f.write(b)
        fsync_file(path)
        fsync_file(folder)
        drop_file_pages(path)  # (untimed in the bench; a no-op fsync and the fadvise here)

    took: dict[str, list[float]] = {"store's writes": [], "one file + fsync": []}
    try:
        with frozen():
            for _ in range(rounds):
                for name, fn in (("store's writes", as_the_store), ("one file + fsync", as_the_peer)):
                    os.sync()
                    start = time.perf_counter()
                    fn()
                    took[name].append(time.perf_counter() - start)
    finally:
        pool.shutdown()
    peer = took["one file + fsync"]
    return [{"case": case.name, "writes": name, "objects": len(blobs) if name == "store's writes" else 1,
             "median_ms": 1000 * statistics.median(t), "vs_peer": statistics.median(a / b for a, b in zip(t, peer))}
            for name, t in took.items()]


_FAKE_DIGESTS = itertools.count(int.from_bytes(os.urandom(8), "big") << 64)  # (another run's are others)


@contextlib.contextmanager
def _free_hashing() -> Iterator[None]:
    """Within the block, a tensor's digest is a counter and a pack's data digest a constant: no byte is
    hashed (a what-if: the objects written are not what their names say, so the case is not loaded after)."""
    from storage import digest, objects

    # unique across calls too: a digest seen in an earlier round would name an object already stored, and
    # the snapshot would write nothing (a what-if of no hashing and no writing)
    fake = lambda *_: f"{digest.PREFIX}{next(_FAKE_DIGESTS):064x}"  # noqa: E731
    with mock.patch.object(digest, "tensor_digest", fake), mock.patch.object(objects, "_data_digest", fake):
        yield


def cpu(case: Case, rounds: int) -> list[dict[str, Any]]:
    """What a snapshot costs in CPU beside its wall time, and what it would take if hashing were free,
    against ``save_file`` + fsync (the bench's peer), taking turns; each a median over ``rounds``.

    The CPU time of the calling thread (``time.thread_time``) and of the process (``time.process_time``:
    the writer threads too). On this VM a thread waiting on a durable write and another running Python
    do not overlap as they would on bare metal (a 1 MiB O_DSYNC write beside 0.5 ms of hashing on
    another thread took as long as the two one after the other), so CPU time adds to the wall time."""
    case.reg.snapshot("m", case.module)
    took: dict[str, dict[str, list[float]]] = {}

    def snapshot_free_hashing() -> None:
        with _free_hashing():
            case.reg.snapshot("m", case.module)

    contenders = {"snapshot": lambda: case.reg.snapshot("m", case.module),
                  "snapshot, hashing free": snapshot_free_hashing,
                  "save_file + fsync": lambda: case.save(True, new_file=True)}
    with frozen():
        for i in range(rounds):
            perturb(case.module, i)
            for name, fn in contenders.items():
                wall, thread, process = time.perf_counter(), time.thread_time(), time.process_time()
                fn()
                got = took.setdefault(name, {"wall": [], "thread": [], "process": []})
                got["wall"].append(time.perf_counter() - wall)
                got["thread"].append(time.thread_time() - thread)
                got["process"].append(time.process_time() - process)
                if name == "save_file + fsync":
                    case.drop_pages()
    peer = took["save_file + fsync"]["wall"]
    return [{"case": case.name, "contender": name, "wall_ms": 1000 * statistics.median(t["wall"]),
             "thread_cpu_ms": 1000 * statistics.median(t["thread"]),
             "process_cpu_ms": 1000 * statistics.median(t["process"]),
             "vs_peer": statistics.median(a / b for a, b in zip(t["wall"], peer))}
            for name, t in took.items()]


def _object_sizes(case: Case) -> list[int]:
    """The sizes of the objects a snapshot of the case's module writes (one put, looked at)."""
    from storage import Store

    store = Store(str(case.work / "sizes"), durable=False)
    manifest = store.put({k: v.detach() for k, v in case.module.state_dict().items()})
    return [int(o["nbytes"]) for o in manifest["objects"].values()]


def format_tables(steps: list[dict[str, Any]], wrote: list[dict[str, Any]], loads: tuple[float, float],
                  spent: list[dict[str, Any]] = ()) -> str:
    lines = [f"anatomy of a synchronous snapshot: median ms from the call; load average {loads[0]:.1f} before, "
             f"{loads[1]:.1f} after, on {os.cpu_count()} cores",
             f"{'case':<22} {'step':<18} {'first':>8} {'last':>8}  what has happened by then"]
    for r in steps:
        last = f"{r['last_ms']:>8.2f}" if r["last_ms"] != r["first_ms"] else f"{'':>8}"
        lines.append(f"{r['case']:<22} {r['step']:<18} {r['first_ms']:>8.2f} {last}  {r['meaning']}")
    lines += ["", f"{'case':<22} {'writes alone':<18} {'objects':>8} {'ms':>8} {'÷ one file':>11}"]
    for r in wrote:
        lines.append(f"{r['case']:<22} {r['writes']:<18} {r['objects']:>8} {r['median_ms']:>8.2f} {r['vs_peer']:>11.2f}")
    if spent:
        lines += ["", f"{'case':<22} {'contender':<24} {'wall ms':>8} {'cpu ms':>8} {'all cpu':>8} {'÷ peer':>7}"
                      "  (cpu: the calling thread's; all cpu: the process's, writer threads too)"]
        for r in spent:
            lines.append(f"{r['case']:<22} {r['contender']:<24} {r['wall_ms']:>8.2f} {r['thread_cpu_ms']:>8.2f} "
                         f"{r['process_cpu_ms']:>8.2f} {r['vs_peer']:>7.2f}")
    return "\n".join(lines)


def run(quick: bool = False, cases: tuple[str, ...] = ("1 MiB / 50 tensors", "100 MiB / 48 tensors"),
        out: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """Measure each case; print the tables; return the rows."""
    n = 5 if quick else 25
    load_before = os.getloadavg()[0]
    steps: list[dict[str, Any]] = []
    wrote: list[dict[str, Any]] = []
    spent: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rlreg-bench-anatomy-", dir=os.environ.get("RLREG_BENCH_DIR")) as tmp:
        for i, name in enumerate(cases):
            print(f"  {name} ...", file=sys.stderr, flush=True)
            case = Case(name, *CASES[name], Path(tmp) / f"case{i}")
            try:
                k = n if "100 MiB" in name else 2 * n
                steps += timeline(case, k)
                wrote += writes(case, max(3, k // 3))
                spent += cpu(case, k)  # (last: its what-if leaves versions whose objects are not what they say)
            finally:
                case.close()
    out(format_tables(steps, wrote, (load_before, os.getloadavg()[0]), spent))
    return ([{"table": "timeline", **r} for r in steps] + [{"table": "writes", **r} for r in wrote]
            + [{"table": "cpu", **r} for r in spent])


if __name__ == "__main__":  # python -m bench.anatomy [--quick]
    run("--quick" in sys.argv[1:])
