"""Transfers to and from S3 that stop part way: a load whose progress callback raised (a Ctrl-C takes
the same way out) stops its downloads at once and leaves nothing in the cache folder (one object's GET
is held by the fault proxy, so the load is certainly part way); a put whose uploads fail stops at the
first failure, not after trying every object."""

from __future__ import annotations

import gc
import os
import threading
import warnings

import numpy as np
import pytest

from storage import Store
from storage.errors import StorageError

pytestmark = pytest.mark.s3


class Stop(Exception):
    pass


def test_a_load_whose_progress_callback_raises_stops_its_downloads_at_once(fault_proxy, s3_bucket, tmp_path):
    """It waited for every download first (the held one: until released), before and after progress
    callbacks moved to the caller's thread."""
    writer = Store(f"{s3_bucket}/held", cache_dir=str(tmp_path / "writer-cache"))
    m = writer.put({f"w{i}": np.full(300_000, i, dtype=np.float32) for i in range(6)})  # an object each
    release = fault_proxy.plan.hold(m["tensors"]["w5"]["object"].removeprefix("blake3:"))
    timer = threading.Timer(60, release.set)  # (the control: the load would wait for this)
    timer.start()
    reader = Store(f"{s3_bucket}/held", cache_dir=str(tmp_path / "cache"))

    def progress(done: int, total: int) -> None:
        if done:  # an object has arrived; w5's GET is held
            raise Stop

    try:
        with pytest.raises(Stop):
            reader.get(m, progress=progress)
        assert not release.is_set(), "the load waited for the held download before it stopped"
    finally:
        release.set()
        timer.cancel()
    assert [n for _, _, files in os.walk(tmp_path / "cache") for n in files if n.startswith(".tmp-")] == []
    assert float(reader.get(m)["w5"][0]) == 5.0  # and the next load reads it all


def test_a_load_stopped_before_most_fetches_started_leaves_no_fetch_unawaited(s3_bucket, tmp_path):
    """Fetches waiting for their turn (32 at once) were coroutines made up front: cancelled before they
    ran, each printed "coroutine '_s3_read' was never awaited"."""
    writer = Store(f"{s3_bucket}/many", cache_dir=str(tmp_path / "writer-cache"))
    m = writer.put({f"w{i:02d}": np.full(20_000, i, dtype=np.float32) for i in range(48)})  # 80 KB: an object each
    reader = Store(f"{s3_bucket}/many", cache_dir=str(tmp_path / "cache"))

    def progress(done: int, total: int) -> None:
        if done:
            raise Stop

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(Stop):
            reader.get(m, progress=progress)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


@pytest.mark.parametrize("reporting", [False, True], ids=["no-progress", "progress"])
def test_a_put_whose_uploads_fail_stops_at_the_first_failure(reporting, fault_proxy, s3_bucket, tmp_path):
    """Every PUT fails: the put raises once one upload failed (its retries spent) and the uploads not
    yet started never start. It waited for every object to be tried first (128 PUTs for 64 objects)."""
    store = Store(f"{s3_bucket}/failing", cache_dir=str(tmp_path / "cache"))
    fault_proxy.plan.set(1.0, faults=("500",), methods=("PUT",))
    tensors = {f"w{i:02d}": np.full(20_000, i, dtype=np.float32) for i in range(64)}  # an object each
    with pytest.raises(StorageError):
        store.put(tensors, progress=(lambda done, total: None) if reporting else None)
    assert fault_proxy.plan.counts["PUT"] < 64, fault_proxy.plan.counts  # not one per object
