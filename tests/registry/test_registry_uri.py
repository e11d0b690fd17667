"""``rlreg://`` URIs as ``load_state_path`` and in ``restore_from_path``, in this process and a fresh one."""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import fsspec
import pytest
import registry_toys as toys
import torch

import registry
from registry import IntegrityError
from registry.fs import RegistryFileSystem
from rlmodule import CheckpointNotFoundError, MultiRLModuleSpec, RLModule


@pytest.fixture
def recorded(default_env):
    """Three versions of ``team/pol`` in the default registry, ``best`` pointing at version 1."""
    module = toys.spec().build()
    modules = []
    for step in (1, 2, 3):
        toys.train_step(module, step)
        registry.snapshot("team/pol", module)
        modules.append(toys.spec().build())
        modules[-1].set_state(module.get_state())
    registry.set_alias("team/pol", "best", 1)
    return modules


def test_load_state_path_and_restore_from_path(recorded):
    v1, v2, v3 = recorded
    assert toys.states_equal(toys.spec(load_state_path="rlreg://team/pol@best").build(), v1)
    assert toys.states_equal(toys.spec(load_state_path="rlreg://team/pol/2").build(), v2)
    assert toys.states_equal(toys.spec(load_state_path="rlreg://team/pol").build(), v3)
    fresh = toys.spec().build()
    fresh.restore_from_path("rlreg://team/pol/2")
    assert toys.states_equal(fresh, v2)
    assert toys.states_equal(RLModule.from_checkpoint("rlreg://team/pol@best"), v1)


def test_an_alias_that_moves_is_followed_by_the_next_restore(recorded):
    v1, _, v3 = recorded
    module = toys.spec().build()
    module.restore_from_path("rlreg://team/pol@best")
    assert toys.states_equal(module, v1)
    registry.set_alias("team/pol", "best", 3)
    module.restore_from_path("rlreg://team/pol@best")
    assert toys.states_equal(module, v3)


def test_multi_module_components_through_rlreg(default_env):
    multi = toys.multi_spec().build()
    toys.train_step(multi["p0"], 5)
    registry.snapshot("league", multi)
    other = toys.multi_spec().build()
    other.restore_from_path("rlreg://league/1/p0", component="p0")
    assert toys.states_equal(other["p0"], multi["p0"])
    assert not toys.states_equal(other["p1"], multi["p1"])


def test_the_filesystem_lists_a_read_only_checkpoint_folder(recorded):
    fs, path = fsspec.core.url_to_fs("rlreg://team/pol/2")
    assert isinstance(fs, RegistryFileSystem) and path == "team/pol/2"
    names = fs.ls(path, detail=False)
    assert {"team/pol/2/metadata.json", "team/pol/2/class_and_ctor_args.json"} <= set(names)
    assert fs.isdir(path) and fs.isfile("team/pol/2/metadata.json")
    assert json.loads(fs.cat_file("team/pol/2/metadata.json"))["format"] == "rlreg.checkpoint/1"
    with pytest.raises(OSError, match="rlreg://team/pol/2/x is read-only") as info:
        fs.pipe_file("team/pol/2/x", b"no")
    assert info.value.errno == errno.EROFS
    with pytest.raises(OSError, match="rlreg://team/pol/2/metadata.json is read-only"):
        fs.open("team/pol/2/metadata.json", "wb")
    with pytest.raises(OSError, match="rlreg://team/pol/2 is read-only"):
        toys.spec().build().save_to_path("rlreg://team/pol/2")
    with pytest.raises(FileNotFoundError, match="model 'team/pol' has no version 9"):
        fs.info("team/pol/9")
    with pytest.raises(FileNotFoundError, match="rlreg://nobody/1: no model named 'nobody'"):
        fs.info("nobody/1")
    with pytest.raises(FileNotFoundError, match="version 2 of model 'team/pol' has no file or folder 'nope'"):
        fs.info("team/pol/2/nope")


def test_unknown_versions_raise_not_found(recorded):
    module = toys.spec().build()
    with pytest.raises(CheckpointNotFoundError, match="rlreg://team/pol/9"):
        module.restore_from_path("rlreg://team/pol/9")
    with pytest.raises(CheckpointNotFoundError, match="rlreg://team/pol@nope"):
        module.restore_from_path("rlreg://team/pol@nope")
    with pytest.raises(CheckpointNotFoundError, match="checkpoint folder rlreg://team/pol/٣ not found"):
        module.restore_from_path("rlreg://team/pol/٣")  # never version 3
    with pytest.raises(FileNotFoundError, match="'team/pol/٣' contains '٣'"):
        RegistryFileSystem().info("rlreg://team/pol/٣")


CHILD = textwrap.dedent(
    """
    import sys, json
    import torch
    import registry_toys as toys
    from rlmodule import RLModule

    assert "registry" not in sys.modules
    built = toys.spec(load_state_path="rlreg://team/pol@best").build()
    restored = toys.spec().build()
    restored.restore_from_path("rlreg://team/pol/3")
    out = {}
    for label, module in (("best", built), ("v3", restored)):
        out[label] = {k: [str(v.dtype), list(v.shape), v.reshape(-1).view(torch.uint8).numpy().tobytes().hex()]
                      for k, v in module.get_state().items()}
    print(json.dumps(out))
    """
)


def test_a_process_that_never_imports_registry(recorded, subprocess_env):
    v1, _, v3 = recorded
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=subprocess_env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    for label, module in (("best", v1), ("v3", v3)):
        expected = {k: [str(v.dtype), list(v.shape), v.reshape(-1).view(torch.uint8).numpy().tobytes().hex()]
                    for k, v in module.get_state().items()}
        assert got[label] == expected, label


def test_each_restore_reads_the_version_anew_and_nothing_is_kept(default_env):
    module = toys.spec().build()
    for step in range(1, 4):
        toys.train_step(module, step)
        registry.snapshot("fresh", module)
    for number in (1, 2, 3, 1):
        restored = toys.spec().build()
        restored.restore_from_path(f"rlreg://fresh/{number}")
        assert toys.states_equal(restored, registry.load("fresh", number))
    assert fsspec.filesystem("memory").find("/") == []  # no scratch folder


@pytest.mark.s3
def test_rlreg_uris_over_s3_storage(default_env, s3_bucket, monkeypatch):
    monkeypatch.setenv("RLREG_STORAGE_URL", s3_bucket + "/blobs")
    module = toys.spec().build()
    toys.train_step(module, 4)
    registry.snapshot("on/s3", module)
    registry.set_alias("on/s3", "prod", 1)
    assert toys.states_equal(toys.spec(load_state_path="rlreg://on/s3@prod").build(), module)


def test_a_registered_name_never_shadows_a_component_folder(default_env):
    multi = toys.multi_spec().build()
    toys.train_step(multi["p0"], 3)
    registry.snapshot("team", multi)
    registry.set_alias("team", "best", 1)
    hijacker = toys.spec().build()
    toys.train_step(hijacker, 8)
    registry.snapshot("team/p0", hijacker)
    assert toys.states_equal(RLModule.from_checkpoint("rlreg://team/p0"), hijacker)  # always the model
    for path in ("rlreg://team/1/p0", "rlreg://team@best/p0", "rlreg://team@latest/p0"):
        other = toys.multi_spec().build()
        other.restore_from_path(path, component="p0")
        assert toys.states_equal(other["p0"], multi["p0"]), path
    # MultiRLModuleSpec restores <load_state_path>/<module_id>: inside model team, not model team/p0.
    for path in ("rlreg://team", "rlreg://team/1", "rlreg://team@best"):
        built = MultiRLModuleSpec(module_specs=toys.multi_spec().module_specs, load_state_path=path).build()
        assert toys.states_equal(built["p0"], multi["p0"]), path
        assert toys.states_equal(built["p1"], multi["p1"]), path
    fs = RegistryFileSystem()
    assert {"team/1/metadata.json", "team/1/p0", "team/1/p1"} <= set(fs.ls("team/1", detail=False))
    assert "team@latest/p0" in fs.ls("rlreg://team", detail=False)


def test_a_missing_version_keeps_the_registrys_reason(recorded):
    fs = RegistryFileSystem()
    for path, reason in (("team/pol/9", "model 'team/pol' has no version 9 (latest is 3)"),
                         ("team/pol@nope", "model 'team/pol' has no alias 'nope'"),
                         ("team/pol/9/metadata.json", "has no version 9 (latest is 3)")):
        with pytest.raises(FileNotFoundError, match=re.escape(reason)):
            fs.info(path)
        with pytest.raises(FileNotFoundError, match=re.escape(reason)):
            fs.cat_file(path)
    assert not fs.exists("team/pol/9")


def test_checkpoints_are_served_from_verified_bytes(default_env):
    module = toys.spec().build()
    registry.snapshot("checked", module)
    _, storage_url = default_env
    [obj] = [p for p in Path(storage_url).rglob("*") if p.is_file() and "objects" in p.parts]
    data = bytearray(obj.read_bytes())
    data[-1] ^= 0xFF
    obj.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="is damaged"):
        toys.spec().build().restore_from_path("rlreg://checked/1")


def test_a_version_restored_again_is_read_again_where_it_can_change(recorded, default_env):
    """The registry keeps a restored version's checkpoint (its spec, state and manifest never change),
    and still reads for each restore whether the version may be read, where an alias points, and every
    byte of its tensors."""
    v1, v2, _ = recorded
    reg = registry.default_registry()
    for _ in range(2):
        module = toys.spec().build()
        module.restore_from_path("rlreg://team/pol/2")
        assert toys.states_equal(module, v2)
    assert reg._checkpoints.get(("team/pol", 2)) is not None  # kept: the second restore used it
    registry.set_alias("team/pol", "best", 2)
    module.restore_from_path("rlreg://team/pol@best")
    assert toys.states_equal(module, v2)
    reg.delete_version("team/pol", 2, reason="a bad run", force=True)
    with pytest.raises(CheckpointNotFoundError, match="a bad run"):
        toys.spec().build().restore_from_path("rlreg://team/pol/2")
    module.restore_from_path("rlreg://team/pol/1")
    _, storage_url = default_env
    for obj in (p for p in Path(storage_url).rglob("*") if p.is_file() and "objects" in p.parts):
        data = bytearray(obj.read_bytes())
        data[-1] ^= 0xFF
        obj.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="is damaged"):
        module.restore_from_path("rlreg://team/pol/1")


def test_concurrent_readers_of_different_versions(default_env):
    module, expected = toys.spec().build(), {}
    for step in range(1, 5):
        toys.train_step(module, step)
        registry.snapshot("busy", module)
        expected[step] = registry.load("busy", step)
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def reader(offset: int) -> None:
        try:
            start.wait()
            for i in range(6):
                number = (offset + i) % 4 + 1
                restored = toys.spec().build()
                restored.restore_from_path(f"rlreg://busy/{number}")
                assert toys.states_equal(restored, expected[number]), number
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [repr(f) for f in failures] == []


def test_nested_names_each_resolve_to_their_own_model(default_env):
    outer, inner = toys.spec().build(), toys.spec().build()
    toys.train_step(inner, 9)
    registry.snapshot("team", outer)
    registry.snapshot("team/pol", inner)
    assert toys.states_equal(RLModule.from_checkpoint("rlreg://team/1"), outer)
    assert toys.states_equal(RLModule.from_checkpoint("rlreg://team/pol/1"), inner)
    assert toys.states_equal(RLModule.from_checkpoint("rlreg://team/pol"), inner)


def test_restoring_a_missing_version_says_why(recorded):
    with pytest.raises(CheckpointNotFoundError, match=re.escape("has no version 9 (latest is 3)")):
        RLModule.from_checkpoint("rlreg://team/pol/9")
    module = toys.spec().build()
    with pytest.raises(CheckpointNotFoundError, match=re.escape("has no alias 'nope'")):
        module.restore_from_path("rlreg://team/pol@nope")
