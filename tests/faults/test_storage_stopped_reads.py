"""A load from S3 that stops part way (its progress callback raised; a Ctrl-C takes the same way out):
the downloads still running stop with it, at once, and leave nothing in the cache folder. One object's
GET is held by the fault proxy, so the load is certainly part way when it stops."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from storage import Store

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
