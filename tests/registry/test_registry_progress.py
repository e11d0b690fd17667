"""``progress=`` of snapshot, load, export, import_checkpoint and verify reaches the store's callbacks."""

from __future__ import annotations

import inspect

import pytest
import registry_toys as toys

from registry import Registry


def ends_at(calls: list[tuple[int, int]], total: int) -> None:
    assert calls, "the callback was never called"
    assert calls[0] == (0, total) and calls[-1] == (total, total), calls
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def object_bytes(manifest) -> int:
    return sum(o["nbytes"] for o in manifest["objects"].values())


def test_snapshot_and_load_report_the_stores_bytes(reg):
    wrote, read = [], []
    mv = reg.snapshot("pol", toys.spec().build(), progress=lambda d, t: wrote.append((d, t)))
    ends_at(wrote, mv.tensor_bytes)
    loaded = reg.load("pol", progress=lambda d, t: read.append((d, t)))
    ends_at(read, object_bytes(reg.manifest("pol", 1)))
    assert toys.states_equal(loaded, reg.load("pol", 1))


def test_export_and_import_report_their_store_side(reg, tmp_path):
    reg.snapshot("pol", toys.spec().build())
    read, wrote = [], []
    path = reg.export("pol", 1, str(tmp_path / "ckpt"), progress=lambda d, t: read.append((d, t)))
    ends_at(read, object_bytes(reg.manifest("pol", 1)))
    mv = reg.import_checkpoint("copy", path, {"from": "pol"}, progress=lambda d, t: wrote.append((d, t)))
    ends_at(wrote, mv.tensor_bytes)
    assert mv.metadata == {"from": "pol"}


def test_verify_reports_every_stored_object(reg):
    module = toys.spec().build()
    reg.snapshot("pol", module)
    toys.train_step(module, 1)
    reg.snapshot("pol", module)
    calls = []
    assert reg.verify(progress=lambda d, t: calls.append((d, t)))["ok"]
    stored = {**reg.manifest("pol", 1)["objects"], **reg.manifest("pol", 2)["objects"]}
    ends_at(calls, sum(o["nbytes"] for o in stored.values()))


@pytest.mark.parametrize("method", ["snapshot", "load", "export", "import_checkpoint", "verify"])
def test_progress_is_keyword_only_and_defaults_to_none(method):
    param = inspect.signature(getattr(Registry, method)).parameters["progress"]
    assert (param.kind, param.default) == (inspect.Parameter.KEYWORD_ONLY, None)
