"""Bad input raises a clear error and changes nothing; damage is detected; projections rebuild equal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import registry_toys as toys
import storage
import torch

import registry
from registry import IntegrityError, InvalidEventError, InvalidNameError, NotFoundError, RegistryError
from rlmodule import CheckpointNotFoundError, StateSerializationError, UntrustedClassError, spec_to_dict


class UnserializableState(toys.DictPolicy):
    """A module whose state holds a value that is neither a tensor nor JSON."""

    def get_state(self, *args, **kwargs):
        state = super().get_state(*args, **kwargs)
        state["extras"] = {"when": object()}
        return state


@pytest.fixture
def reg(make_registry, storage_url):
    """This file's registries run on local and S3 storage."""
    return make_registry(storage_url)


@pytest.fixture
def recorded(reg):
    """Two versions of ``pol`` and the states they hold."""
    module = toys.spec().build()
    states = []
    for step in (1, 2):
        toys.train_step(module, step)
        reg.snapshot("pol", module, {"step": step})
        states.append(module.get_state())
    reg.set_alias("pol", "best", 1)
    return states


def assert_nothing_changed(reg, states, head, digests):
    assert reg.head() == head
    assert sorted(reg.store.list_digests()) == digests
    for number, state in enumerate(states, start=1):
        expected = toys.spec().build()
        expected.set_state(state)
        assert toys.states_equal(reg.load("pol", number), expected)


def test_bad_input_raises_before_anything_is_written(reg, recorded):
    head, digests = reg.head(), sorted(reg.store.list_digests())
    module = toys.spec().build()
    toys.train_step(module, 99)  # new tensors: a partial write would show up as new blobs
    cases = [
        (lambda: reg.snapshot("bad name", module), InvalidNameError, "model name 'bad name' contains whitespace"),
        (lambda: reg.snapshot("pol/7", module), InvalidNameError, "has the all-digit segment '7'"),
        (lambda: reg.snapshot("../pol", module), InvalidNameError, "has a '..' segment"),
        (lambda: reg.snapshot("pol", module, {"t": torch.ones(1)}), InvalidEventError, "metadata['t'] is not JSON"),
        (lambda: reg.snapshot("pol", module, {"x": float("nan")}), InvalidEventError, "metadata['x'] is not JSON"),
        (lambda: reg.snapshot("pol", module, {1: "a"}), InvalidEventError, "metadata key 1 is not a string"),
        (lambda: reg.snapshot("pol", "not a module"), TypeError, "str is not an RLModule"),
        (lambda: reg.load("pol", 3), NotFoundError, "model 'pol' has no version 3 (latest is 2)"),
        (lambda: reg.load("pol", alias="worst"), NotFoundError, "model 'pol' has no alias 'worst'"),
        (lambda: reg.load("nobody"), NotFoundError, "no model named 'nobody'"),
        (lambda: reg.versions("nobody"), NotFoundError, "no model named 'nobody'"),
        (lambda: reg.history("nobody"), NotFoundError, "no model named 'nobody'"),
        (lambda: reg.load("pol", 1, alias="best"), InvalidNameError, "give a version or an alias, not both"),
        (lambda: reg.load("pol", "1"), InvalidNameError, "version '1' is not an integer"),
        (lambda: reg.set_alias("pol", "best", 5), NotFoundError, "model 'pol' has no version 5"),
        (lambda: reg.diff("pol", 1, 4), NotFoundError, "model 'pol' has no version 4"),
        (lambda: reg.export("pol", 9, "memory://nowhere"), NotFoundError, "model 'pol' has no version 9"),
        (lambda: reg.import_checkpoint("pol", "memory://no/checkpoint"), CheckpointNotFoundError,
         "no/checkpoint not found"),
        (lambda: reg.import_checkpoint("pol/1", "memory://no/checkpoint"), InvalidNameError, "all-digit segment"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            call()
    foreign = spec_to_dict(toys.spec()) | {"module_class": "never_imported_pkg.policies.Policy"}
    with pytest.raises(UntrustedClassError, match="class 'never_imported_pkg.policies.Policy' is not trusted"):
        reg.register("pol", foreign)
    unserializable = UnserializableState(toys.spec().get_rl_module_config())
    with pytest.raises(StateSerializationError, match="state key 'extras/when'"):
        reg.snapshot("pol", unserializable)
    assert_nothing_changed(reg, recorded, head, digests)


def test_errors_form_one_tree():
    assert issubclass(NotFoundError, RegistryError) and issubclass(NotFoundError, LookupError)
    assert issubclass(InvalidNameError, ValueError)
    assert issubclass(IntegrityError, storage.IntegrityError) and issubclass(IntegrityError, RegistryError)


def test_a_damaged_blob_is_detected_and_never_returned(make_registry, local_storage_url):
    reg = make_registry()
    module = toys.spec().build()
    reg.snapshot("pol", module)
    [obj] = [p for p in Path(local_storage_url).rglob("*") if p.is_file() and "objects" in p.parts]
    data = bytearray(obj.read_bytes())
    data[-1] ^= 0xFF
    obj.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as info:
        reg.load("pol")
    assert isinstance(info.value, storage.IntegrityError)
    report = reg.verify()
    assert not report["ok"] and len(report["storage"]["damaged"]) == 1
    obj.unlink()
    report = reg.verify()
    assert report["missing"] == {"pol/1": sorted(storage.manifest_objects(reg.manifest("pol")))}


def test_verify_of_a_healthy_registry(reg, recorded):
    report = reg.verify()
    assert report["ok"] and report["versions"] == 2 and report["missing"] == {}
    assert report["storage"]["checked"] >= 1


def test_projections_rebuilt_equal_the_live_ones(reg, recorded):
    reg.snapshot("other", toys.multi_spec().build())
    reg.register("spec/only", toys.spec(hidden=3))
    reg.set_alias("pol", "prod", 2)
    reg.remove_alias("pol", "best")
    live = reg.projection_rows()
    assert reg.rebuild_projections() == reg.head()
    assert reg.projection_rows() == live
    assert [v.aliases for v in reg.versions("pol")] == [(), ("prod",)]


def test_schema_status_and_upgrade(reg):
    status = reg.schema_status()
    assert status.up_to_date and status.current == status.head
    assert reg.upgrade_schema().up_to_date


def test_module_level_bad_input(default_env):
    with pytest.raises(NotFoundError, match="no model named 'ghost'"):
        registry.load("ghost")
    with pytest.raises(InvalidNameError, match="model name '' is empty"):
        registry.versions("")
    assert [e.type for e in registry.events()] == ["StorageBound"]  # only where the new registry keeps objects


def test_a_class_defined_in_a_function_is_refused_before_anything_is_written(reg, recorded):
    class Local(toys.DictPolicy):
        pass

    spec = toys.spec()
    spec.module_class = Local
    head, digests = reg.head(), sorted(reg.store.list_digests())
    with pytest.raises(UntrustedClassError, match="is defined inside a function"):
        reg.snapshot("pol", spec.build())
    assert_nothing_changed(reg, recorded, head, digests)


def test_an_older_schema_is_refused_then_upgraded_on_request(make_registry, db_url):
    from registry import SchemaVersionError, db

    first = make_registry()
    first.snapshot("pol", toys.spec().build())
    previous = db.downgrade(first.event_store.engine, "-1").current
    first.close()
    with pytest.raises(SchemaVersionError, match=f"has schema revision '{previous}'.*run `rlreg db upgrade`"):
        make_registry()
    upgraded = make_registry(upgrade=True)
    assert upgraded.schema_status().up_to_date
    assert [v.version for v in upgraded.versions("pol")] == [1]


def test_verify_names_the_versions_and_tensors_a_damaged_object_breaks_and_repairs(make_registry, local_storage_url):
    reg = make_registry()
    module, other = toys.spec().build(), toys.spec(hidden=4).build()
    reg.snapshot("pol", module)
    reg.snapshot("pol", module, {"again": True})  # same tensors: the same object
    reg.snapshot("other", other)
    [obj] = storage.manifest_objects(reg.manifest("pol"))
    assert storage.manifest_objects(reg.manifest("pol", 1)) == {obj} != storage.manifest_objects(reg.manifest("other"))
    path = next(p for p in Path(local_storage_url).rglob(obj.split(":")[-1]) if p.is_file())
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    tensors = {name: obj for name in sorted(reg.manifest("pol")["tensors"])}
    report = reg.verify()
    assert not report["ok"] and report["missing"] == {}
    assert report["damaged_versions"] == {"pol/1": tensors, "pol/2": tensors}
    assert report["storage"]["quarantined"] == {} and path.exists()
    repaired = reg.verify(repair=True)
    assert repaired["damaged_versions"] == {"pol/1": tensors, "pol/2": tensors}
    assert list(repaired["storage"]["quarantined"]) == [obj] and not path.exists()
    with pytest.raises(FileNotFoundError):
        reg.load("pol", 1)
    reg.snapshot("pol", module)  # the next snapshot of those tensors writes the object again
    assert toys.states_equal(reg.load("pol", 1), module) and toys.states_equal(reg.load("pol", 2), module)
    healthy = reg.verify()
    assert healthy["ok"] and healthy["damaged_versions"] == {} and healthy["missing"] == {}


def test_text_with_a_nul_is_refused_alike_on_both_databases_and_records_nothing(reg, recorded):
    """SQLite stored a NUL in metadata, a description or a reason; PostgreSQL's text columns cannot hold
    one, and failed with a generic database error. Both refuse it now, naming it, before anything is written."""
    head = reg.event_store.head()
    module = toys.spec().build()
    with pytest.raises(InvalidEventError, match="NUL"):
        reg.snapshot("pol", module, {"note": {"deep": ["ok", "a\x00b"]}})
    with pytest.raises(InvalidEventError, match="NUL"):
        reg.snapshot("pol", module, {"k\x00": 1})
    with pytest.raises(InvalidNameError, match="NUL"):
        reg.set_description("pol", "a\x00b", version=1)
    with pytest.raises(InvalidEventError, match="NUL"):
        reg.delete_version("pol", 1, reason="a\x00b")
    with pytest.raises(InvalidEventError, match="NUL"):
        reg.set_retention("pol", keep_best=("k\x00", 1))
    assert reg.event_store.head() == head
