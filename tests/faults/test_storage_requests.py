"""A snapshot to S3 asks the bucket whether an object is there (a HEAD) only for the objects the
registry has a row for: new weights go straight up. Requests are counted by the proxy in front of
moto (nothing injected); the control, without the registry's answer, asks about every object."""

from __future__ import annotations

import pytest
import registry_toys as toys

from registry import Registry
from registry import gc as collector


@pytest.mark.s3
@pytest.mark.parametrize("hint", [True, False], ids=["registry rows", "control: no rows asked"])
def test_only_objects_the_registry_knows_are_asked_about(fault_proxy, s3_bucket, sqlite_url, tmp_path, monkeypatch,
                                                         hint):
    if not hint:
        monkeypatch.setattr(collector, "may_be_stored", lambda event_store: lambda digest: True)
    url = s3_bucket + "/blobs"
    reg = Registry(sqlite_url, url, cache_dir=str(tmp_path / "cache"))
    module = toys.spec().build()
    counts = fault_proxy.plan.counts

    counts.clear()
    reg.snapshot("pol", module)
    heads, puts = counts["HEAD"], counts["PUT"]
    assert puts >= 1
    assert heads == (0 if hint else puts), counts  # new objects: no HEAD unless the control asks anyway

    counts.clear()
    reg.snapshot("pol", module)  # the same weights: every object known, asked about, none uploaded
    assert counts["HEAD"] == puts and counts["PUT"] == 0, counts

    toys.train_step(module, 1)
    counts.clear()
    reg.snapshot("pol", module)
    assert counts["PUT"] >= 1 and (counts["HEAD"] == 0 or not hint), counts
    assert toys.states_equal(reg.load("pol"), module)
    reg.close()


@pytest.mark.s3
def test_an_object_removed_behind_the_registry_s_back_is_uploaded_again(fault_proxy, s3_bucket, sqlite_url, tmp_path):
    url = s3_bucket + "/blobs"
    reg = Registry(sqlite_url, url, cache_dir=str(tmp_path / "cache"))
    module = toys.spec().build()
    reg.snapshot("pol", module)
    fs = reg.store.fs
    stored = [p for p in fs.find(url.removeprefix("s3://") + "/objects")]
    assert stored
    fs.rm(stored)  # the rows stay: the registry still believes they are there
    counts = fault_proxy.plan.counts
    counts.clear()
    reg.snapshot("pol", module)  # known objects are asked about, found missing and written again
    assert counts["HEAD"] == len(stored) and counts["PUT"] == len(stored), counts
    cold = Registry(sqlite_url, url, cache_dir=str(tmp_path / "cold"))
    assert toys.states_equal(cold.load("pol"), module) and cold.verify()["ok"]
    reg.close()
    cold.close()
