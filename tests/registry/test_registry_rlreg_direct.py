"""``rlreg://`` restores built straight from what is stored: the bound registry, few SQL statements,
the verified buffer handed over without copies, and files equal to what ``export`` writes."""

from __future__ import annotations

import copy
import json
import os
import threading

import fsspec
import pytest
import registry_toys as toys
import sqlalchemy as sa
import torch

from registry import Registry
from rlmodule import RLModule
from storage import Location


@pytest.fixture
def two(tmp_path):
    """Two registries (never the default one), each holding model ``m`` with different weights."""
    regs = []
    for k in range(2):
        reg = Registry(f"sqlite:///{tmp_path / f'r{k}.db'}", str(tmp_path / f"blobs{k}"))
        module = toys.spec(hidden=32).build()
        toys.train_step(module, k + 1)
        reg.snapshot("m", module)
        reg.set_alias("m", "best", 1)
        regs.append((reg, module))
    yield regs
    for reg, _ in regs:
        reg.close()


def test_a_bound_registry_serves_rlreg_uris_without_touching_the_environment(two):
    (a, ma), (b, mb) = two
    before = {k: v for k, v in os.environ.items() if k.startswith("RLREG_")}
    with a.bind():
        assert toys.states_equal(toys.spec(hidden=32, load_state_path="rlreg://m@best").build(), ma)
        with b.bind():
            assert toys.states_equal(RLModule.from_checkpoint("rlreg://m/1"), mb)
        assert toys.states_equal(RLModule.from_checkpoint("rlreg://m"), ma)
    assert {k: v for k, v in os.environ.items() if k.startswith("RLREG_")} == before
    other: list = []
    with a.bind():  # a context variable: another thread does not see this binding
        t = threading.Thread(target=lambda: other.append(Location("rlreg://m/1", registry=b).load_tensors(
            "module_state.safetensors")))
        t.start()
        t.join()
    assert toys.states_equal(_module_with(other[0]), mb)
    assert toys.states_equal(_module_with(Location("rlreg://m/1", registry=b).load_tensors(
        "module_state.safetensors")), mb)


def _module_with(tensors):
    module = toys.spec(hidden=32).build()
    module.set_state(tensors)
    return module


def test_a_restore_runs_at_most_five_sql_statements(two):
    (a, ma), _ = two
    statements: list[str] = []
    sa.event.listen(a.event_store.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *args: statements.append(statement))
    fresh = toys.spec(hidden=32).build()
    with a.bind():
        fresh.restore_from_path("rlreg://m@best")
    assert toys.states_equal(fresh, ma)
    assert 1 <= len(statements) <= 5, statements


def _mapped_from(reg, tensors) -> dict[str, str]:
    """The file each tensor's memory is mapped from ("" if none), and the registry's objects folder."""
    with open("/proc/self/maps") as f:
        maps = [line.split() for line in f]

    def mapped_file(address: int) -> str:
        for fields in maps:
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= address < hi:
                return fields[5] if len(fields) > 5 else ""
        return ""

    return {k: mapped_file(t.data_ptr()) for k, t in tensors.items() if t.numel()}


def _objects_dir(reg) -> str:
    return os.path.join(reg.storage_url.removeprefix("file://"), "objects")  # storage_url is normalised


def test_the_state_tensors_are_views_of_the_verified_object_mapping(two):
    """No copy between the verified buffer (a private memory map of the object file) and set_state, but
    of the few small tensors a pack holds off a 64-byte boundary (copied once, into aligned memory)."""
    (a, _), _ = two
    tensors = Location("rlreg://m/1", registry=a).load_tensors("module_state.safetensors")
    held = _mapped_from(a, tensors)
    copied = {k for k, path in held.items() if not path.startswith(_objects_dir(a))}
    assert held and copied != set(held), held
    assert all(tensors[k].nbytes <= 4096 for k in copied), {k: tensors[k].nbytes for k in copied}
    assert all(t.data_ptr() % 64 == 0 for t in tensors.values() if t.numel())


def test_a_restore_takes_the_verified_tensors_as_the_module_s_own(two, monkeypatch):
    """restore_from_path copies nothing more: the module holds the very tensors the restore read."""
    from registry import fs as rlreg_fs

    (a, ma), _ = two
    served: list[dict] = []
    real = rlreg_fs.RegistryFileSystem.load_tensors

    def spy(self, path):
        served.append(real(self, path))
        return served[-1]

    monkeypatch.setattr(rlreg_fs.RegistryFileSystem, "load_tensors", spy)
    fresh = toys.spec(hidden=32).build()
    params = dict(fresh.named_parameters())
    with a.bind():
        fresh.restore_from_path("rlreg://m@best")
    assert toys.states_equal(fresh, ma)
    assert all(params[k] is p for k, p in fresh.named_parameters())
    (tensors,) = served
    own = fresh.state_dict()
    assert tensors and all(own[k].data_ptr() == t.data_ptr() for k, t in tensors.items() if t.numel())
    with torch.no_grad():  # the mapping is private: writing the module changes no stored byte
        for p in fresh.parameters():
            p.add_(1.0)
    assert a.verify()["ok"]
    assert toys.states_equal(a.load("m", 1), ma)


def test_the_served_files_equal_an_export(two, tmp_path):
    (a, _), _ = two
    multi = toys.multi_spec().build()
    toys.train_step(multi["p1"], 3)
    a.snapshot("league", multi)
    exported = Location(a.export("league", 1, tmp_path / "export"))
    fs, root = fsspec.core.url_to_fs("rlreg://league/1", registry=a)
    served = sorted(p[len(root) + 1:] for p in fs.find(root))
    assert served == sorted(str(p.relative_to(tmp_path / "export")) for p in (tmp_path / "export").rglob("*")
                            if p.is_file())
    for rel in served:
        if rel.endswith(".json"):
            got, want = json.loads(fs.cat_file(f"{root}/{rel}")), exported.read_json(rel)
            if rel.endswith("metadata.json"):
                got.pop("rlreg_version"), want.pop("rlreg_version")
            assert got == want, rel
        else:
            assert fs.cat_file(f"{root}/{rel}") == exported.read_bytes(rel), rel
            assert fs.info(f"{root}/{rel}")["size"] == len(exported.read_bytes(rel)), rel


def test_a_served_json_file_reads_as_its_bytes_parse_and_each_read_is_a_fresh_copy(two, monkeypatch):
    (a, _), _ = two
    multi = toys.multi_spec().build()
    a.snapshot("league", multi)
    fs, root = fsspec.core.url_to_fs("rlreg://league/1", registry=a)
    names = [p[len(root) + 1:] for p in fs.find(root) if p.endswith(".json")]
    assert any(n.endswith("module_state.json") or "state" in n for n in names)
    for rel in names:
        parsed = json.loads(fs.cat_file(f"{root}/{rel}"))
        first = fs.read_json(f"{root}/{rel}")
        assert first == parsed and list(first) == list(parsed), rel  # the same keys, in the same order
        first["changed"] = [1]
        for value in first.values():
            if isinstance(value, dict):
                value["changed"] = 1
        assert fs.read_json(f"{root}/{rel}") == parsed, rel  # a caller's changes stay its own
    with pytest.raises(ValueError, match="not JSON"):
        fs.read_json(next(p for p in fs.find(root) if p.endswith(".safetensors")))
    from storage import jsondepth

    monkeypatch.setattr(jsondepth, "loads", lambda *a: pytest.fail("parsed again"))
    with a.bind():
        assert Location("rlreg://league/1").read_json("metadata.json")["format"]


def test_a_served_json_file_keeps_the_depth_limit_a_file_on_disk_has(two, tmp_path):
    from rlmodule import CheckpointFormatError

    (a, _), _ = two
    deep = 8
    for _ in range(96):
        deep = [deep]
    spec = toys.spec()
    spec.model_config_dict["deep"] = deep  # (its constructor file nests past storage.MAX_JSON_DEPTH)
    a.snapshot("deep", spec.build())
    exported = a.export("deep", 1, tmp_path / "export")
    with pytest.raises(CheckpointFormatError, match="nest"):
        RLModule.from_checkpoint(exported)
    with a.bind(), pytest.raises(CheckpointFormatError, match="nest"):
        RLModule.from_checkpoint("rlreg://deep/1")


def test_a_stored_object_gone_is_said_as_such_not_as_a_missing_checkpoint_file(two, tmp_path):
    """A restore reads each file without looking it up first; when a read fails, a file that is there
    (rlreg://m/1/module_state.safetensors) is not reported missing: the error names the object gone."""
    import storage

    (a, ma), _ = two
    for obj in storage.manifest_objects(a.manifest("m")):
        h = obj.removeprefix("blake3:")
        os.remove(tmp_path / "blobs0" / "objects" / h[:2] / h)
    fresh = toys.spec(hidden=32).build()
    before = copy.deepcopy(fresh)
    with a.bind(), pytest.raises(FileNotFoundError) as info:
        fresh.restore_from_path("rlreg://m/1")
    assert "is not a complete checkpoint" not in str(info.value)
    assert "blake3:" in str(info.value) and "blobs0" in str(info.value), str(info.value)
    assert toys.states_equal(fresh, before)  # nothing set
    with a.bind(), pytest.raises(FileNotFoundError, match="is not a complete checkpoint: nothing.json is missing"):
        from rlmodule.checkpoints import read_json_object

        read_json_object(Location("rlreg://m/1"), "nothing.json")
