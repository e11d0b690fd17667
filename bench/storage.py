"""The storage benchmark (issue 4): ``Store.put``/``get`` against safetensors and torch, same run.

For float32 state dicts of 1 MB, 100 MB and 1 GB (~50 tensors; 1 GB only without ``--quick``) and
one of 2,000 tensors totalling 10 MB, on a local folder: first ``put`` vs ``save_file``; an
unchanged ``put`` (bytes written, vs the first put and a bare digest pass); ``get`` (every byte
verified) vs ``load_file`` + reading every byte and vs ``torch.load(weights_only=True)``; objects
and µs per tensor for the 2,000-tensor dict. On S3 (moto's server in its own process, through s3fs):
requests per put and per get, and a warm-cache get vs the local get. Times are the best of N runs
(the machine is shared), taken in turn within each repeat, with dirty pages flushed (untimed)
before each write; the machine's memcpy and disk-write bandwidth are printed as the limits.
``run(quick)`` prints the table and returns the rows; ``python -m bench storage`` runs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from bench._timing import best_of, disk_write_bandwidth, interleaved, memcpy_bandwidth
from storage import Store, manifest_objects
from storage.digest import tensor_digest
from storage.tensors import to_raw

MB = 1 << 20
TARGETS = {"put / save_file": 1.3, "get / (load_file + touch)": 1.3, "objects": 20, "get µs/tensor": 10.0,
           "warm-cache S3 get / local get": 1.2}


def state_dict(total_bytes: int, tensors: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``tensors`` float32 tensors totalling ``total_bytes`` (about)."""
    g = torch.Generator().manual_seed(seed)
    per = max(1, total_bytes // 4 // tensors)
    return {f"layer{i:04d}.weight": torch.randn(per, generator=g) for i in range(tensors)}


def cases(quick: bool) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """The state dicts measured."""
    out = [("1 MB / 50 tensors", state_dict(1 * MB, 50)), ("100 MB / 50 tensors", state_dict(100 * MB, 50))]
    if not quick:
        out.append(("1 GB / 50 tensors", state_dict(1024 * MB, 50)))
    out.append(("10 MB / 2,000 tensors", state_dict(10 * MB, 2000)))
    return out


def row(case: str, metric: str, value: float, unit: str, system: str = "rlreg", **detail: Any) -> dict[str, Any]:
    """One measurement (same shape as the other suites' rows)."""
    target = TARGETS.get(metric)
    out = {"case": case, "system": system, "metric": metric, "value": value, "unit": unit, **detail}
    if target is not None:
        out |= {"target": target, "ok": value <= target}
    return out


def touch(tensors: dict[str, torch.Tensor]) -> None:
    """Read every byte (a sum per tensor), as a lazily memory-mapped load has not."""
    for t in tensors.values():
        t.sum()


def digest_pass(state: dict[str, torch.Tensor]) -> None:
    """Hash every tensor once, as ``put`` must to know it is unchanged."""
    for name, t in state.items():
        raw = to_raw(name, t)
        tensor_digest(raw.dtype, raw.shape, raw.data)


def local_rows(case: str, state: dict[str, torch.Tensor], work: Path, repeats: int) -> list[dict[str, Any]]:
    """Every local-folder measurement of one state dict."""
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    st_file, pt_file, store_dir = work / "s.safetensors", work / "s.pt", work / "store"
    # Untimed before each write: remove the last copy and flush dirty pages (os.sync), so that
    # neither contender is throttled by the kernel writing back the other's gigabyte.
    fresh = lambda: (shutil.rmtree(store_dir, ignore_errors=True), os.sync())  # noqa: E731
    no_file = lambda: (st_file.unlink(missing_ok=True), os.sync())  # noqa: E731
    holder: dict[str, Any] = {}
    t = interleaved(
        {
            "save": (lambda: safetensors.torch.save_file(state, str(st_file)), no_file),
            "put": (lambda: holder.update(m=Store(store_dir).put(state)), fresh),
        },
        repeats,
    )
    t_save, t_put = t["save"], t["put"]
    store = Store(store_dir)
    before = store.stats.bytes_written
    torch.save(state, pt_file)
    t = interleaved(
        {
            "put2": (lambda: store.put(state), None),
            "digest": (lambda: digest_pass(state), None),
            "get": (lambda: store.get(holder["m"]), None),
            "load": (lambda: touch(safetensors.torch.load_file(str(st_file))), None),
            "load_bare": (lambda: safetensors.torch.load_file(str(st_file)), None),
            "torch": (lambda: torch.load(pt_file, weights_only=True), None),
        },
        repeats,
    )
    written2 = store.stats.bytes_written - before
    t_put2, t_digest, t_get, t_load, t_load_bare, t_torch = (
        t[k] for k in ("put2", "digest", "get", "load", "load_bare", "torch")
    )
    n = len(state)
    rows = [
        row(case, "save_file", t_save * 1e3, "ms", "safetensors", bytes=nbytes, GBps=nbytes / t_save / 1e9),
        row(case, "first put", t_put * 1e3, "ms", bytes=nbytes, GBps=nbytes / t_put / 1e9),
        row(case, "put / save_file", t_put / t_save, "×"),
        row(case, "unchanged put: tensor bytes written", written2, "B"),
        row(case, "unchanged put / first put", t_put2 / t_put, "×"),
        row(case, "unchanged put / digest pass", t_put2 / t_digest, "×", digest_ms=t_digest * 1e3),
        row(case, "get (verified)", t_get * 1e3, "ms", GBps=nbytes / t_get / 1e9),
        row(case, "load_file + touch", t_load * 1e3, "ms", "safetensors", untouched_ms=t_load_bare * 1e3),
        row(case, "get / (load_file + touch)", t_get / t_load, "×"),
        row(case, "torch.load(weights_only)", t_torch * 1e3, "ms", "torch"),
        row(case, "get / torch.load", t_get / t_torch, "×"),
        row(case, "objects written", len(manifest_objects(holder["m"])), "", tensors=n),
    ]
    if n >= 1000:
        rows += [
            row(case, "objects", len(manifest_objects(holder["m"])), "", tensors=n),
            row(case, "get µs/tensor", t_get / n * 1e6, "µs"),
            row(case, "put µs/tensor", t_put / n * 1e6, "µs"),
            row(case, "load_file µs/tensor", t_load_bare / n * 1e6, "µs", "safetensors"),
            row(case, "torch.load µs/tensor", t_torch / n * 1e6, "µs", "torch"),
        ]
    for p in (st_file, pt_file):
        p.unlink(missing_ok=True)
    fresh()
    return rows


def s3_rows(case: str, state: dict[str, torch.Tensor], endpoint: str, work: Path, repeats: int) -> list[dict[str, Any]]:
    """Requests per put and get on S3 (moto), and a warm-cache get against the local get."""
    import boto3

    bucket = f"bench-{os.getpid()}-{abs(hash(case)) % 10**6}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    store = Store(f"s3://{bucket}/store", cache_dir=str(work / "cache-put"))
    counter = _count_requests(store)
    m = store.put(state)
    put_requests = counter[0]
    cold = Store(f"s3://{bucket}/store", cache_dir=str(work / "cache-get"))
    counter = _count_requests(cold)
    cold.get(m)
    get_requests, warm_before = counter[0], counter[0]
    t_warm = best_of(lambda: cold.get(m), repeats)
    warm_requests = (counter[0] - warm_before) / repeats
    local = Store(work / "local")
    lm = local.put(state)
    t_local = best_of(lambda: local.get(lm), repeats)
    shutil.rmtree(work / "local", ignore_errors=True)
    shutil.rmtree(work / "cache-put", ignore_errors=True)
    shutil.rmtree(work / "cache-get", ignore_errors=True)
    objs = len(manifest_objects(m))
    return [
        row(case, "S3 requests per put", put_requests, "", "rlreg (moto)", objects=objs),
        row(case, "S3 requests per cold get", get_requests, "", "rlreg (moto)", objects=objs),
        row(case, "S3 requests per warm get", warm_requests, "", "rlreg (moto)"),
        row(case, "warm-cache S3 get / local get", t_warm / t_local, "×", "rlreg (moto)",
            warm_ms=t_warm * 1e3, local_ms=t_local * 1e3),
    ]


def _count_requests(store: Store) -> list[int]:
    store.fs.connect()
    n = [0]

    def hook(**_: Any) -> None:
        n[0] += 1

    store.fs.s3.meta.events.register("before-send.s3", hook)
    return n


_MOTO_CHILD = """
import logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the bench closes the pipe (or dies)
server.stop()
"""


class MotoProcess:
    """moto's S3 server in a process of its own, so that it does not share the bench's GIL."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-c", _MOTO_CHILD], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline()  # type: ignore[union-attr]
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"moto's server did not start (exit {self._proc.returncode}); is moto[server] installed?")
        self.url = f"http://127.0.0.1:{int(line)}"

    def stop(self) -> None:
        """End the server: close its stdin, wait, kill it if it lingers."""
        with contextlib.suppress(OSError):
            self._proc.stdin.close()  # type: ignore[union-attr]
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def moto_server() -> tuple[MotoProcess, str]:
    """Start moto's S3 server on 127.0.0.1 in its own process and point the AWS environment at it; ``(server, url)``.

    In this process it would compete with the client measured for the GIL, penalising whichever
    side does more Python work; stopped with ``server.stop()`` (it also ends when this process does).
    """
    server = MotoProcess()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=server.url)
    return server, server.url


def machine_rows(work: Path) -> list[dict[str, Any]]:
    """The physical limits: memcpy, disk write (page cache and fsync'd) and digest bandwidth."""
    data = torch.randn(64 * MB // 4)
    t_b3 = best_of(lambda: tensor_digest("F32", [data.numel()], memoryview(data.numpy()).cast("B")), 3)
    return [
        row("machine", "memcpy", memcpy_bandwidth() / 1e9, "GB/s", "machine"),
        row("machine", "disk write (page cache)", disk_write_bandwidth(str(work)) / 1e9, "GB/s", "machine"),
        row("machine", "disk write + fsync", disk_write_bandwidth(str(work), fsync=True) / 1e9, "GB/s", "machine"),
        row("machine", "blake3 digest", 64 * MB / t_b3 / 1e9, "GB/s", "machine"),
        row("machine", "cpus", os.cpu_count() or 0, "", "machine", load_average=os.getloadavg()[0]),
    ]


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width table, with each target and whether it is met."""
    lines = [f"{'case':<22} {'system':<12} {'metric':<38} {'value':>10} {'unit':<5} target"]
    for r in rows:
        target = f"≤ {r['target']:g} {'ok' if r['ok'] else 'MISSED'}" if "target" in r else ""
        value = f"{r['value']:10.3g}" if isinstance(r["value"], float) else f"{r['value']:10}"
        lines.append(f"{r['case']:<22} {r['system']:<12} {r['metric']:<38} {value} {r['unit']:<5} {target}")
    return "\n".join(lines)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure everything, print the table, return the rows."""
    repeats = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="rlreg-bench-storage-", dir=os.environ.get("RLREG_BENCH_DIR")) as tmp:
        work = Path(tmp)
        os.environ["RLREG_CACHE_DIR"] = str(work / "cache")
        rows = machine_rows(work)
        all_cases = cases(quick)
        for case, state in all_cases:
            print(f"  {case} ...", file=sys.stderr, flush=True)
            rows += local_rows(case, state, work, 2 if "1 GB" in case else repeats)
        try:
            server, endpoint = moto_server()
        except ImportError as exc:
            print(f"  S3 rows skipped: moto[server] is not installed ({exc})", file=sys.stderr)
        else:
            try:
                for case, state in all_cases:
                    if "1 GB" not in case and (not quick or "100 MB" not in case):
                        print(f"  S3 {case} ...", file=sys.stderr, flush=True)
                        rows += s3_rows(case, state, endpoint, work, repeats)
            finally:
                server.stop()
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    run("--quick" in sys.argv[1:])
