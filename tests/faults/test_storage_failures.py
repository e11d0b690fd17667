"""Storage failures are typed: an S3 endpoint answering 500/503 or dropping connections gives
``StorageUnavailableError`` naming the URL and the operation (exit 7), with nothing recorded."""

from __future__ import annotations

import pytest
import registry_toys as toys

from registry import Registry
from registry.errors import StorageUnavailableError
from rlreg import exitcodes


@pytest.mark.s3
@pytest.mark.parametrize("fault", ["500", "503", "drop-before", "drop-after"])
def test_snapshot_load_verify_raise_storage_unavailable(fault, fault_proxy, s3_bucket, sqlite_url, tmp_path):
    url = s3_bucket + "/blobs"
    reg = Registry(sqlite_url, url, cache_dir=str(tmp_path / "cache-a"))
    module = toys.spec().build()
    reg.snapshot("pol", module)
    head = reg.head()
    fault_proxy.plan.set(1.0, (fault,))
    toys.train_step(module, 1)  # new tensors: the snapshot must upload
    with pytest.raises(StorageUnavailableError, match=rf"^snapshot of 'pol': storage '{url}' is unavailable") as info:
        reg.snapshot("pol", module)
    assert exitcodes.classify(info.value) == exitcodes.STORAGE
    assert reg.head() == head  # nothing recorded
    cold = Registry(sqlite_url, url, cache_dir=str(tmp_path / "cache-b"))  # nothing cached: load must read S3
    with pytest.raises(StorageUnavailableError, match=rf"^load of 'pol' version 1: storage '{url}' is unavailable"):
        cold.load("pol")
    with pytest.raises(StorageUnavailableError, match=rf"^verify: storage '{url}' is unavailable"):
        cold.verify()
    assert fault_proxy.plan.counts[fault] >= 3
    fault_proxy.plan.set(0.0)
    assert cold.verify()["ok"] and toys.states_equal(cold.load("pol"), reg.load("pol"))
    reg.close()
    cold.close()
