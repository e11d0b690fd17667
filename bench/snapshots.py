"""The snapshot benchmark (issue 12): every target as a ratio measured in this one run.

``python -m bench snapshots [--quick]``. Contenders take turns within each round (peers interleaved),
each timed run starts after ``os.sync()``, and each ratio is the median over the rounds of the
per-round ratio, printed with its spread (min..max over rounds) beside its target. rlreg runs on a
SQLite file + local folder with durable writes (objects fsynced, SQLite ``synchronous=FULL``), so
its synchronous snapshot is compared with ``save_file`` + fsync; the cost of durability is shown by
the same snapshot with it switched off. A snapshot writes new objects and keeps the old versions,
so the peer writes a new checkpoint file each time and keeps the old ones; overwriting one file is
shown beside it (no target): its pages are the ones just freed, where new files need fresh pages,
which this VM hands out at a few hundred MB/s (1 MiB: 0.5 ms to overwrite, 2.5-5 ms to a new file,
`write` alone). Every peer file's pages are given back after its timed save (untimed), as the store
gives back an object's pages once fsynced: neither contender's next write then runs on pages the other
freed (``Case.drop_pages``). S3 runs against moto's server in its own process (so that it does not compete
with the client for the GIL), through s3fs.
The 2 cores are shared: the load average before and after is printed as the noise indicator.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rlmodule import RLModuleSpec, TorchRLModule

MB = 1 << 20
CASES = {  # name: (tensors, float32 elements each)
    "1 MiB / 50 tensors": (50, MB // 4 // 50),
    "100 MiB / 48 tensors": (48, 100 * MB // 4 // 48),
    "1 GiB / 48 tensors": (48, 1024 * MB // 4 // 48),
    "2,000 small tensors (10 MB)": (2000, 10 * MB // 4 // 2000),
}
SNAPSHOT_TARGET = {"tiny": 1.3, "1 MiB / 50 tensors": 1.3, "100 MiB / 48 tensors": 1.0, "1 GiB / 48 tensors": 1.0,
                   "2,000 small tensors (10 MB)": 1.3}


class BenchModule(TorchRLModule):
    """A module of ``tensors`` parameters of ``numel`` float32 each, initialised as ``nn.Linear`` does."""

    def setup(self) -> None:
        cfg = self.config.model_config_dict
        for i in range(cfg["tensors"]):
            param = torch.nn.Parameter(torch.empty(cfg["numel"]))
            torch.nn.init.uniform_(param, -0.05, 0.05)
            self.register_parameter(f"w{i:04d}", param)

    def _forward_inference(self, batch, **kwargs):
        return {}

    _forward_exploration = _forward_train = _forward_inference


def spec(tensors: int, numel: int, load_state_path: str | None = None) -> RLModuleSpec:
    return RLModuleSpec(module_class=BenchModule, observation_space=gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
                        action_space=gym.spaces.Discrete(2), model_config_dict={"tensors": tensors, "numel": numel},
                        load_state_path=load_state_path)


def timed(fn: Callable[[], Any]) -> float:
    os.sync()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rounds(contenders: dict[str, Callable[[], Any]], n: int, before: Callable[[int], Any] | None = None,
           after: dict[str, Callable[[], Any]] | None = None) -> dict[str, list[float]]:
    """Seconds of each contender in each of ``n`` rounds, taking turns; ``after[name]()`` untimed.

    What the process holds when the rounds start is frozen out of the garbage collector (``gc.freeze``)
    until they end: a full collection of it (~90 ms with torch's and SQLAlchemy's objects) fell in
    whichever contender's window its allocations tripped it, the same one round after round (2,000
    small tensors: the peer's in one run, 137 against 42 ms, ratio 0.45; the snapshot's in another,
    3.5). Each contender still pays the collections of what it allocates. (A collection before each
    call instead left the caches cold for the next: a 1 MiB load took 2.15 ms rather than 1.26.)"""
    out: dict[str, list[float]] = {name: [] for name in contenders}
    with frozen():
        for i in range(n):
            if before is not None:
                before(i)
            for name, fn in contenders.items():
                out[name].append(timed(fn))
                if after and name in after:
                    after[name]()
    return out


@contextlib.contextmanager
def frozen() -> Iterator[None]:
    """Within the block, the garbage collector leaves alone what the process held at its start."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def ratio_row(case: str, metric: str, ours: list[float], base: list[float], target: float | None,
              higher_is_better: bool = False, **detail: Any) -> dict[str, Any]:
    """The median over rounds of ours/base (base/ours for a throughput ratio), with its spread."""
    per_round = [b / o if higher_is_better else o / b for o, b in zip(ours, base)]
    value = statistics.median(per_round)
    row = {"case": case, "metric": metric, "value": value, "min": min(per_round), "max": max(per_round),
           "ours_s": statistics.median(ours), "base_s": statistics.median(base), "rounds": len(per_round), **detail}
    if target is not None:
        row |= {"target": (">= " if higher_is_better else "<= ") + f"{target:g}",
                "ok": value >= target if higher_is_better else value <= target}
    return row


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def perturb(module: torch.nn.Module, step: int) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1e-3 * (step + 1))


class Case:
    """One state size: a module, two registries (durable and not), the peers' files."""

    def __init__(self, name: str, tensors: int, numel: int, work: Path) -> None:
        from registry import Registry
        from storage import Store

        self.name, self.work = name, work
        work.mkdir(parents=True)
        self.spec = spec(tensors, numel)
        torch.manual_seed(0)
        self.module = self.spec.build()
        self.reg = Registry(f"sqlite:///{work / 'rlreg.db'}", str(work / "blobs"))
        self.loose = Registry(f"sqlite:///{work / 'loose.db'}", str(work / "loose-blobs"))
        self.loose._store = Store(str(work / "loose-blobs"), durable=False)
        _sqlite_normal(self.loose)
        self.file = work / "state.safetensors"
        self.saves = 0
        self.dst = [np.empty(p.numel(), dtype=np.float32) for p in self.module.parameters()]

    def save(self, durable: bool, new_file: bool = False) -> None:
        """``save_file`` of the state to the same file, or (``new_file``) to a new checkpoint file each
        time, the old ones kept, as a snapshot writes new objects and keeps the old versions."""
        path = self.file
        if new_file:
            self.saves += 1
            path = self.work / f"checkpoint-{self.saves:06d}.safetensors"
        save_file(self.module.state_dict(), str(path))
        if durable:
            fsync_file(path)

    def drop_pages(self) -> None:
        """Untimed, after each peer save: its file's pages go back (once written), as rlreg's store gives
        back an object's pages once fsynced. Each contender then starts from pages just freed: where only
        rlreg gave them back, the peer's next new file took them and rlreg's next write took fresh ones,
        which this VM hands out slowly, so each measured the other's page use (1 MiB: snapshot 5.2 ms
        against 2.5 ms when the peer gives its pages back too, the peer 2.0 against 1.6). The peer that
        does not fsync is fsynced here too, untimed: rlreg's store that does not (``durable=False``)
        writes around the page cache, leaving no pages either."""
        path = self.work / f"checkpoint-{self.saves:06d}.safetensors" if self.saves else self.file
        for p in {path, self.file}:
            if p.exists():
                drop_file_pages(p)

    def memcpy(self) -> None:
        for p, d in zip(self.module.parameters(), self.dst):
            np.copyto(d, p.detach().numpy())

    def close(self) -> None:
        self.reg.close()
        self.loose.close()


def drop_file_pages(path: Path) -> None:
    """fsync ``path``, then give its pages back (as the store does after an fsync: Linux only)."""
    if not hasattr(os, "posix_fadvise"):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _sqlite_normal(reg: Any) -> None:
    """The old, non-durable SQLite setting, on this registry's connections only (for the cost of FULL)."""
    import sqlalchemy as sa

    engine = reg.event_store.engine
    engine.dispose()
    sa.event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous=NORMAL"))


def snapshot_rows(case: Case, n: int) -> list[dict[str, Any]]:
    pending: list[Any] = []
    for reg in (case.reg, case.loose):  # untimed: the spec recorded and the 256 object folders made (a first
        reg.snapshot("m", case.module)  # put's one-time cost, 25x a 1 MiB snapshot), as for every later one
    t = rounds(
        {
            "snapshot": lambda: case.reg.snapshot("m", case.module),
            "save_file + fsync": lambda: case.save(True, new_file=True),
            "save_file + fsync, same file": lambda: case.save(True),
            "save_file": lambda: case.save(False, new_file=True),
            "snapshot, not durable": lambda: case.loose.snapshot("m", case.module),
            "snapshot(block=False) returns": lambda: pending.append(case.reg.snapshot("m", case.module, block=False)),
            "memcpy of the state": case.memcpy,
        },
        n,
        before=lambda i: perturb(case.module, i),
        after={"snapshot(block=False) returns": lambda: pending.pop().result(), "save_file + fsync": case.drop_pages,
               "save_file + fsync, same file": case.drop_pages, "save_file": case.drop_pages},
    )
    name = case.name
    return [
        ratio_row(name, "snapshot / (save_file + fsync)", t["snapshot"], t["save_file + fsync"],
                  SNAPSHOT_TARGET[name]),
        ratio_row(name, "snapshot / (save_file + fsync), overwriting one file", t["snapshot"],
                  t["save_file + fsync, same file"], None),
        ratio_row(name, "snapshot / save_file (no fsync)", t["snapshot"], t["save_file"], None),
        ratio_row(name, "durable cost: snapshot / snapshot not durable", t["snapshot"], t["snapshot, not durable"],
                  None),
        ratio_row(name, "block=False: caller blocked / memcpy", t["snapshot(block=False) returns"],
                  t["memcpy of the state"], 1.5),
    ]


def load_rows(case: Case, n: int) -> list[dict[str, Any]]:
    case.reg.snapshot("m", case.module)
    case.reg.set_alias("m", "best", case.reg.version("m").version)
    case.save(False)
    target = case.spec.build()

    def peer() -> None:
        fresh = case.spec.build()
        fresh.load_state_dict(load_file(str(case.file)))

    def rlreg_uri() -> None:
        with case.reg.bind():
            target.restore_from_path("rlreg://m@best")

    def rlreg_uri_build() -> None:
        with case.reg.bind():
            spec(**case.spec.model_config_dict, load_state_path="rlreg://m@best").build()

    t = rounds({"load": lambda: case.reg.load("m", alias="best"), "build + load_file + load_state_dict": peer,
                "restore_from_path(rlreg://)": rlreg_uri, "spec.build() from rlreg://": rlreg_uri_build}, n)
    return [
        ratio_row(case.name, "load / (build + load_file + load_state_dict)", t["load"],
                  t["build + load_file + load_state_dict"], 0.5),
        ratio_row(case.name, "rlreg:// restore_from_path / load", t["restore_from_path(rlreg://)"], t["load"], 1.2),
        ratio_row(case.name, "spec.build() with rlreg:// (random init included) / load",
                  t["spec.build() from rlreg://"], t["load"], None),
    ]


def s3_rows(work: Path, quick: bool, n: int) -> list[dict[str, Any]]:
    """A snapshot and a cold load through S3 (moto) against plain s3fs with the same concurrency."""
    import boto3

    from bench.storage import moto_server
    from registry import Registry
    from storage import filesystems
    from storage import store as store_module

    tensors, numel = CASES["100 MiB / 48 tensors" if quick else "1 GiB / 48 tensors"]
    name = f"S3 {tensors * numel * 4 / MB:.0f} MiB / {tensors} tensors"
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server, endpoint = moto_server()
    try:
        bucket = f"bench-snapshots-{os.getpid()}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        module = spec(tensors, numel).build()
        blobs = [bytes(p.detach().numpy().tobytes()) for p in module.parameters()]
        regs: list[Any] = []
        state = {"i": 0}

        def fresh_registry(i: int) -> None:
            state["i"] = i
            regs.append(Registry(f"sqlite:///{work / f's3-{i}.db'}", f"s3://{bucket}/rlreg{i}",
                                 cache_dir=str(work / f"cache-put-{i}")))

        fs = None

        def plain_upload() -> None:
            nonlocal fs
            fs = regs[-1].store.fs
            fs.pipe({f"{bucket}/plain{state['i']}/{k}": b for k, b in enumerate(blobs)},
                    batch_size=store_module._UPLOAD_THREADS)

        up = rounds({"snapshot": lambda: regs[-1].snapshot("m", module), "s3fs upload": plain_upload}, n,
                    before=fresh_registry)
        readers: list[Any] = []

        def cold_reader(i: int) -> None:
            readers.append(Registry(f"sqlite:///{work / f's3-{i}.db'}", f"s3://{bucket}/rlreg{i}",
                                    cache_dir=str(work / f"cache-get-{i}")))
            state["i"] = i

        paths = [f"{bucket}/plain{{}}/{k}" for k in range(len(blobs))]
        down = rounds({"load": lambda: readers[-1].load("m"),
                       "s3fs download": lambda: fs.cat([p.format(state["i"]) for p in paths],
                                                       batch_size=filesystems.FETCHES)}, n,
                      before=cold_reader)
        for reg in regs + readers:
            reg.close()
    finally:
        server.stop()
    return [
        ratio_row(name, "snapshot throughput / s3fs upload", up["snapshot"], up["s3fs upload"], 0.9,
                  higher_is_better=True),
        ratio_row(name, "load throughput / s3fs download", down["load"], down["s3fs download"], 0.9,
                  higher_is_better=True),
    ]


def format_table(rows: list[dict[str, Any]], loads: tuple[float, float]) -> str:
    lines = [f"snapshots: ratios are medians over rounds of the per-round ratio (spread min..max); "
             f"load average {loads[0]:.1f} before, {loads[1]:.1f} after, on {os.cpu_count()} cores",
             f"{'case':<30} {'metric':<58} {'median':>7} {'min..max':>13} {'ours s':>8} {'base s':>8}  target"]
    for r in rows:
        target = f"{r['target']} {'ok' if r['ok'] else 'MISSED'}" if "target" in r else ""
        spread = f"{r['min']:.2f}..{r['max']:.2f}"
        lines.append(f"{r['case']:<30} {r['metric']:<58} {r['value']:>7.2f} {spread:>13} {r['ours_s']:>8.4f} "
                     f"{r['base_s']:>8.4f}  {target}")
    return "\n".join(lines)


def run(quick: bool = False, only_s3: bool = False) -> list[dict[str, Any]]:
    """Measure everything (``only_s3``: the S3 rows alone), print the table, return the rows."""
    n = 3 if quick else 7
    load_before = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rlreg-bench-snapshots-", dir=os.environ.get("RLREG_BENCH_DIR")) as tmp:
        work = Path(tmp)
        os.environ.setdefault("RLREG_CACHE_DIR", str(work / "cache"))
        for name, (tensors, numel) in {} if only_s3 else CASES.items():
            if quick and "1 GiB" in name:
                continue
            print(f"  {name} ...", file=sys.stderr, flush=True)
            case = Case(name, tensors, numel, work / f"case{len(rows)}")
            try:
                k = 3 if "1 GiB" in name else n if "100 MiB" in name else 3 * n  # small: cheap, and noisier
                rows += snapshot_rows(case, k)
                rows += load_rows(case, k)
            finally:
                case.close()
                del case
        print("  S3 ...", file=sys.stderr, flush=True)
        try:
            rows += s3_rows(work, quick, 2 if quick else 5)
        except ImportError as exc:
            print(f"  S3 rows skipped: {exc}", file=sys.stderr)
    rows = [{"suite": "snapshots", **r} for r in rows]
    print(format_table(rows, (load_before, os.getloadavg()[0])))
    return rows


if __name__ == "__main__":  # python -m bench.snapshots [--quick] [--s3]
    run("--quick" in sys.argv[1:], only_s3="--s3" in sys.argv[1:])
