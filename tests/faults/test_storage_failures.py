"""Storage failures are typed: an S3 endpoint answering 500/503 or dropping connections gives
``StorageUnavailableError`` naming the URL and the operation (exit 7), with nothing recorded."""

from __future__ import annotations

import pytest
import registry_toys as toys

from registry import Registry
from registry.errors import StorageUnavailableError
from rlreg import exitcodes


@pytest.mark.s3
def test_snapshot_load_verify_raise_storage_unavailable(fault_proxy, s3_bucket, sqlite_url, tmp_path):
    """Each kind of fault once per operation kind: 500 on a snapshot's upload, 503 on a load, a connection
    dropped before forwarding on verify, one dropped after forwarding (the server did the work) on a snapshot."""
    url = s3_bucket + "/blobs"
    reg = Registry(sqlite_url, url, cache_dir=str(tmp_path / "cache-a"))
    module = toys.spec().build()
    reg.snapshot("pol", module)
    head = reg.head()
    cold = Registry(sqlite_url, url, cache_dir=str(tmp_path / "cache-b"))  # nothing cached: load must read S3
    calls = [
        ("500", "snapshot of 'pol'", lambda: reg.snapshot("pol", module)),
        ("503", "load of 'pol' version 1", lambda: cold.load("pol")),
        ("drop-before", "verify", cold.verify),
        ("drop-after", "snapshot of 'pol'", lambda: reg.snapshot("pol", module)),
    ]
    for step, (fault, operation, call) in enumerate(calls, start=1):
        toys.train_step(module, step)  # new tensors: a snapshot must upload
        fault_proxy.plan.set(1.0, (fault,))
        with pytest.raises(StorageUnavailableError, match=rf"^{operation}: storage '{url}' is unavailable") as info:
            call()
        fault_proxy.plan.set(0.0)
        assert exitcodes.classify(info.value) == exitcodes.STORAGE
        assert reg.head() == head  # nothing recorded
        assert fault_proxy.plan.counts[fault] >= 2, (fault, fault_proxy.plan.counts)  # retried first
    assert cold.verify()["ok"] and toys.states_equal(cold.load("pol"), reg.load("pol"))
    reg.close()
    cold.close()


@pytest.mark.s3
@pytest.mark.parametrize("fault, times", [("500", 1), ("drop-before", 1), ("drop-after", 1), ("503", 2)])
def test_a_retried_upload_sends_the_whole_object_again(fault, times, fault_proxy, s3_bucket, sqlite_url, tmp_path):
    """Every PUT fails ``times`` times (an error, or the connection dropped before or after the server stored
    it) and is retried: each retry sends the whole body again (a stream, rewound), so the version stores
    and a registry with nothing cached loads it, every object verified, equal to what was recorded.
    A dropped connection is retried by aiohttp itself, a 500 by botocore, which rewinds the body; 503
    twice outlasts botocore's two attempts (the fixture's), and s3fs calls again with the same body."""
    url = s3_bucket + "/blobs"
    reg = Registry(sqlite_url, url, cache_dir=str(tmp_path / "cache-a"))
    module = toys.spec().build()
    fault_proxy.plan.set(1.0, (fault,), methods=("PUT",), first=times)
    version = reg.snapshot("pol", module)
    fault_proxy.plan.set(0.0)
    objects = {t["object"] for t in reg.manifest("pol")["tensors"].values()}
    assert fault_proxy.plan.counts[fault] >= times * len(objects) > 0, fault_proxy.plan.counts
    cold = Registry(sqlite_url, url, cache_dir=str(tmp_path / "cache-b"))
    assert cold.verify()["ok"]
    assert toys.states_equal(cold.load("pol", version.version), module)
    reg.close()
    cold.close()
