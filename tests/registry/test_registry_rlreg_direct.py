"""``rlreg://`` restores built straight from what is stored: the bound registry, few SQL statements,
the verified buffer handed over without copies, and files equal to what ``export`` writes."""

from __future__ import annotations

import json
import os
import threading

import fsspec
import pytest
import registry_toys as toys
import sqlalchemy as sa

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


def test_the_state_tensors_are_views_of_the_verified_object_mapping(two):
    """No copy between the verified buffer (a private memory map of the object file) and set_state."""
    (a, _), _ = two
    tensors = Location("rlreg://m/1", registry=a).load_tensors("module_state.safetensors")
    with open("/proc/self/maps") as f:
        maps = [line.split() for line in f]
    objects_dir = os.path.join(a.storage_url, "objects")

    def mapped_file(address: int) -> str:
        for fields in maps:
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= address < hi:
                return fields[5] if len(fields) > 5 else ""
        return ""

    held = {k: mapped_file(t.data_ptr()) for k, t in tensors.items() if t.numel()}
    assert held and all(path.startswith(objects_dir) for path in held.values()), held


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
