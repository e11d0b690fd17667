"""Several processes putting the same tensors at once, then reading them into one shared cache at once:
one consistent, verified result.

One set of spawned processes writes to a local folder and then to S3 (process start-up, mostly
importing torch, is the slow part on a shared machine).
"""

from __future__ import annotations

import json
import multiprocessing
from collections import defaultdict

from _writer import snapshot, write
from storage_helpers import same

from storage import Store

PROCESSES = 3


def test_concurrent_writers_of_the_same_tensors(s3_bucket, tmp_path):
    urls = [str(tmp_path / "store"), s3_bucket + "/store"]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [
        ctx.Process(target=write, args=(urls, str(tmp_path / "shared-cache"), barrier, results))
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    manifests = defaultdict(set)
    for _ in range(PROCESSES * len(urls)):
        url, m = results.get(timeout=180)
        manifests[url].add(m)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(manifests[urls[0]]) == 1 and manifests[urls[0]] == manifests[urls[1]]
    manifest = json.loads(manifests[urls[0]].pop())
    for url in urls:
        store = Store(url, cache_dir=str(tmp_path / "reader"))
        report = store.verify()
        assert report.ok and report.checked == len(manifest["objects"])
        found = sorted(store.fs.find(store.location.path))
        assert found == sorted(store._path(d) for d in manifest["objects"])  # no temporary files left
        out = store.get(manifest)
        assert all(same(out[k], v) for k, v in snapshot().items())
    # the S3 readers filled one cache: it alone now serves a load, verified
    cached = Store(urls[1], cache_dir=str(tmp_path / "shared-cache"))
    cached.fs.rm(cached.location.path, recursive=True)
    out = cached.get(manifest)
    assert cached.stats.cache_hits == len(manifest["objects"]) and cached.stats.objects_read == 0
    assert all(same(out[k], v) for k, v in snapshot().items())


def test_threads_putting_at_once_into_a_fresh_store_share_its_writer_threads(tmp_path, monkeypatch):
    """Background snapshots' first puts come at once: each made a pool of writer threads of its own
    (never shut down), so the store's writers were not the store's (eight each, left running). The
    pool is made slowly here, so that the threads' checks and makes interleave."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from storage import store as store_module

    pools = []

    class SlowPool(ThreadPoolExecutor):
        def __init__(self, *args, **kwargs) -> None:
            time.sleep(0.05)
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(store_module, "ThreadPoolExecutor", SlowPool)
    store = Store(str(tmp_path / "store"))
    start, errors = threading.Barrier(4), []

    def put(i: int) -> None:
        try:
            start.wait(10)
            store.begin_put({"w": np.full(1000, i, dtype=np.float32)}).wait()
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(pools) == 1, f"{len(pools)} writer pools made by one store"
    pools[0].shutdown()
