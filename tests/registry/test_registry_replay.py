"""Snapshots replayed bit for bit: a user's own module, multi-modules, specs, the default registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import registry_toys as toys
import torch

import registry
from registry import ModelVersion, NotFoundError, Registry
from rlmodule import Columns, MultiRLModule


def outputs(module, batch):
    return module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]


def test_twenty_versions_of_a_users_module_replay_bit_for_bit(make_registry, storage_url):
    reg = make_registry(storage_url)
    module = toys.spec().build()
    batch = toys.batch()
    expected = []
    for step in range(1, 21):
        toys.train_step(module, step)
        version = reg.snapshot("team/cartpole/ppo", module, {"step": step, "reward": step * 0.5})
        assert (version.version, version.metadata) == (step, {"step": step, "reward": step * 0.5})
        expected.append((module.get_state(), outputs(module, batch)))

    listed = reg.versions("team/cartpole/ppo")
    assert [v.version for v in listed] == list(range(1, 21))
    assert [v.metadata["step"] for v in listed] == list(range(1, 21))
    assert all(v.tensor_bytes == listed[0].tensor_bytes > 0 for v in listed)
    for number, (state, out) in enumerate(expected, start=1):
        loaded = reg.load("team/cartpole/ppo", number)
        assert type(loaded) is toys.DictPolicy
        reference = toys.spec().build()
        reference.set_state(state)
        assert toys.states_equal(loaded, reference), f"version {number} differs"
        assert torch.equal(outputs(loaded, batch), out)
    assert toys.states_equal(reg.load("team/cartpole/ppo"), module)


def test_multi_module_round_trip(reg):
    multi = toys.multi_spec().build()
    toys.train_step(multi["p1"], 3)
    version = reg.snapshot("league", multi)
    loaded = reg.load("league")
    assert isinstance(loaded, MultiRLModule) and sorted(loaded.keys()) == ["p0", "p1"]
    assert toys.states_equal(loaded, multi)
    assert reg.manifest("league", 1)["tensors"].keys() >= {"p0/net.0.weight", "p1/steps"}
    assert reg.spec("league") == reg.spec("league", version.version)
    assert "multi_rl_module_class" in reg.spec("league")


def test_a_spec_is_recorded_only_when_it_changes(reg):
    module = toys.spec(hidden=8).build()
    reg.snapshot("p", module)
    reg.snapshot("p", module)
    reg.snapshot("p", toys.spec(hidden=16).build())
    types = [e.type for e in reg.history("p")]
    assert types == ["SpecRecorded", "VersionRecorded", "VersionRecorded", "SpecRecorded", "VersionRecorded"]
    assert [e.stream_version for e in reg.history("p")] == [1, 2, 3, 4, 5]
    v = reg.versions("p")
    assert v[0].spec_digest == v[1].spec_digest != v[2].spec_digest
    assert reg.spec("p", 3)["module_config"]["model_config_dict"] == {"hidden": 16}
    assert reg.load("p", 3).net[0].out_features == 16


@pytest.mark.parametrize("block", [True, False])
def test_a_spec_changed_in_place_is_recorded_and_an_unchanged_one_is_not_serialized_again(reg, monkeypatch, block):
    import copy

    import rlmodule
    from rlmodule import RLModuleSpec, gym_space_from_dict

    module = RLModuleSpec(module_class=toys.DictPolicy, observation_space=copy.deepcopy(toys.OBS_SPACE),
                          action_space=toys.ACT_SPACE, model_config_dict={"hidden": 8}).build()

    def snap() -> int:
        out = reg.snapshot("p", module, block=block)
        return (out if block else out.result()).version

    snap()
    serialized = []
    real = rlmodule.spec_to_dict
    monkeypatch.setattr(rlmodule, "spec_to_dict", lambda m: serialized.append(m) or real(m))
    snap()
    assert serialized == []  # the same spec: remembered, not serialized again
    module.config.observation_space["pos"].high[0] = 2.0  # changed in place
    bounds = snap()
    module.config.model_config_dict["note"] = 1
    as_int = snap()
    module.config.model_config_dict["note"] = 1.0  # equal in Python, not in JSON
    as_float = snap()
    assert serialized.count(module) == 3
    types = [e.type for e in reg.history("p")]
    assert types == ["SpecRecorded", "VersionRecorded", "VersionRecorded"] + ["SpecRecorded", "VersionRecorded"] * 3
    assert gym_space_from_dict(reg.spec("p", bounds)["module_config"]["observation_space"])["pos"].high[0] == 2.0
    assert json.dumps(reg.spec("p", as_int)["module_config"]["model_config_dict"]["note"]) == "1"
    assert json.dumps(reg.spec("p", as_float)["module_config"]["model_config_dict"]["note"]) == "1.0"


def test_a_spec_changed_while_it_is_serialized_is_not_remembered_for_the_config_before(reg, monkeypatch):
    """Another thread changes the config while a snapshot serializes it: the spec recorded is the new one,
    and it is not remembered as the spec of the config as it was (a later return to that config would
    record it)."""
    import copy

    import rlmodule
    from rlmodule import RLModuleSpec

    module = RLModuleSpec(module_class=toys.DictPolicy, observation_space=copy.deepcopy(toys.OBS_SPACE),
                          action_space=toys.ACT_SPACE, model_config_dict={"hidden": 8}).build()
    real = rlmodule.spec_to_dict

    def meanwhile(m):
        if m is module:
            module.config.model_config_dict["lr"] = 0.5  # (a trainer thread, between the key and the JSON)
        return real(m)

    monkeypatch.setattr(rlmodule, "spec_to_dict", meanwhile)
    first = reg.snapshot("p", module).version
    monkeypatch.undo()
    del module.config.model_config_dict["lr"]
    second = reg.snapshot("p", module).version
    assert reg.spec("p", first)["module_config"]["model_config_dict"] == {"hidden": 8, "lr": 0.5}
    assert reg.spec("p", second)["module_config"]["model_config_dict"] == {"hidden": 8}


def test_a_config_holding_a_structured_dtype_is_refused_as_not_json(reg):
    import copy

    import numpy as np

    from rlmodule import ModelConfigError, RLModuleSpec

    module = RLModuleSpec(module_class=toys.DictPolicy, observation_space=copy.deepcopy(toys.OBS_SPACE),
                          action_space=toys.ACT_SPACE, model_config_dict={"hidden": 8}).build()
    module.config.model_config_dict["dt"] = np.dtype([("a", "<f4")])
    with pytest.raises(ModelConfigError, match="dt"):
        reg.snapshot("p", module)


def test_register_records_a_spec_alone(reg):
    digest = reg.register("only/spec", toys.spec())
    assert len(digest) == 64
    assert reg.register("only/spec", toys.spec()) == digest  # unchanged: nothing appended
    assert [e.type for e in reg.history("only/spec")] == ["SpecRecorded"]
    [info] = reg.models()
    assert (info.name, info.latest_version, info.versions) == ("only/spec", None, 0)
    with pytest.raises(NotFoundError, match="model 'only/spec' has no versions yet"):
        reg.load("only/spec")
    assert reg.register("only/spec", toys.spec(load_state_path="rlreg://elsewhere/1")) == digest
    version = reg.snapshot("only/spec", toys.spec().build())
    assert version.spec_digest == digest and version.version == 1
    assert [e.type for e in reg.history("only/spec")] == ["SpecRecorded", "VersionRecorded"]


def test_two_registries_on_the_same_urls_see_the_same_models(make_registry):
    a, b = make_registry(), make_registry()
    module = toys.spec().build()
    a.snapshot("shared", module)
    assert [m.name for m in b.models()] == ["shared"]
    assert toys.states_equal(b.load("shared"), module)


def test_events_and_records_are_json(reg):
    reg.snapshot("j", toys.spec().build(), {"note": "first"})
    reg.set_alias("j", "prod", 1)
    json.dumps([e.to_dict() for e in reg.events()])
    json.dumps([v.to_dict() for v in reg.versions("j")])
    json.dumps([m.to_dict() for m in reg.models()])
    assert reg.versions("j")[0].to_dict()["uri"] == "rlreg://j/1"
    head = reg.head()  # the storage binding, the spec, the version, the alias
    assert [e.position for e in reg.events(after=head - 2)] == [head - 1, head]
    assert [e.position for e in reg.events(limit=1)] == [1]


def test_module_level_helpers_read_the_environment_at_call_time(monkeypatch, tmp_path, default_env):
    module = toys.spec().build()
    assert isinstance(registry.snapshot("env/a", module), ModelVersion)
    assert [m.name for m in registry.models()] == ["env/a"]
    monkeypatch.setenv("RLREG_DB_URL", f"sqlite:///{tmp_path / 'other.db'}")
    monkeypatch.setenv("RLREG_STORAGE_URL", str(tmp_path / "other-blobs"))
    assert registry.models() == []
    monkeypatch.setenv("RLREG_DB_URL", default_env[0])
    monkeypatch.setenv("RLREG_STORAGE_URL", default_env[1])
    assert toys.states_equal(registry.load("env/a"), module)
    assert [v.version for v in registry.versions("env/a")] == [1]


def test_default_locations_are_under_rlreg_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("RLREG_HOME", str(home))
    with Registry() as reg:
        reg.snapshot("local", toys.spec().build())
        assert reg.db_url == f"sqlite:///{home / 'rlreg.db'}"
        assert reg.storage_url == f"file://{home / 'blobs'}"
    assert (home / "rlreg.db").is_file() and any((home / "blobs").rglob("*"))


def test_public_api_is_exported():
    for name in registry.__all__:
        assert getattr(registry, name) is not None, name
    assert registry.Registry is Registry
    assert {"Registry", "ModelVersion", "Event", "ModelDiff", "load", "snapshot"} <= set(registry.__all__)


@pytest.mark.parametrize("make", [lambda: toys.spec().build(), lambda: toys.multi_spec().build()])
def test_load_skips_random_initialisation(reg, make):
    module = make()
    reg.snapshot("fast", module)
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    loaded = reg.load("fast")
    assert torch.equal(torch.rand(4), expected), "load drew random numbers: the module was initialised"
    assert toys.states_equal(loaded, module)
    for part in (loaded.values() if isinstance(loaded, MultiRLModule) else [loaded]):
        assert all(not t.is_meta for t in (*part.parameters(), *part.buffers()))


def test_a_first_load_draws_nothing_on_meta_nor_imports_dynamo(tmp_path):
    """nn.Embedding's normal_ on meta ran torch's Python reference, which imports torch._dynamo (0.8 s) and
    sets TORCHINDUCTOR_CACHE_DIR in os.environ: a fresh interpreter, as a user's script starts."""
    script = f"""
import os, sys
import registry_toys as toys
import torch
from registry import Registry
os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
reg = Registry("sqlite:///{tmp_path}/r.db", "{tmp_path}/blobs", cache_dir="{tmp_path}/cache")
module = toys.spec().build()
assert isinstance(module.embed, torch.nn.Embedding)
reg.snapshot("m", module)
loaded = reg.load("m")
with reg.bind():
    restored = toys.spec(load_state_path="rlreg://m/1").build()
assert toys.states_equal(loaded, module) and toys.states_equal(restored, module)
print("dynamo" if "torch._dynamo" in sys.modules else "", os.environ.get("TORCHINDUCTOR_CACHE_DIR", ""))
reg.close()
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"imported torch._dynamo / set TORCHINDUCTOR_CACHE_DIR: {done.stdout!r}"


@pytest.mark.parametrize(
    ("cls", "check"),
    [
        (toys.NonPersistentBufferPolicy, lambda m: torch.equal(m.table, torch.arange(5.0) * 3)),
        (toys.TensorAttributePolicy, lambda m: torch.equal(m.consts, torch.linspace(0, 1, 4))),
        (toys.ItemInSetupPolicy, lambda m: m.width == 4),
        (toys.TiedPolicy, lambda m: m.head2.weight is m.net[2].weight),
        (toys.PartialSetStatePolicy, lambda m: torch.equal(m.scale, torch.ones(2, 2, dtype=torch.bfloat16))),
        (toys.HiddenParameterPolicy, lambda m: m.net[0].peer[0] is m.extra and m.extra.bias.device.type == "cpu"),
    ],
)
def test_modules_the_meta_device_cannot_build_exactly_are_built_normally(reg, cls, check):
    spec = toys.spec()
    spec.module_class = cls
    module = spec.build()
    toys.train_step(module, 1)
    reg.snapshot("careful", module)
    loaded = reg.load("careful")
    assert type(loaded) is cls and check(loaded)
    if cls is toys.PartialSetStatePolicy:  # what its own set_state skips keeps its initial value
        assert torch.equal(loaded.net[0].weight, module.net[0].weight) and loaded.steps == 0
    else:
        assert toys.states_equal(loaded, module)
    assert all(not t.is_meta for t in (*loaded.parameters(), *loaded.buffers()))


@pytest.mark.parametrize("make", [lambda: toys.spec().build(), lambda: toys.multi_spec().build()])
def test_loads_of_a_spec_are_independent_copies(reg, make):
    """The second load copies the first's kept meta build: equal state, no shared tensor, no random numbers."""
    module = make()
    reg.snapshot("twice", module)
    first = reg.load("twice")
    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    second = reg.load("twice")
    assert torch.equal(torch.rand(4), expected)
    assert toys.states_equal(first, module) and toys.states_equal(second, module)
    parts = lambda m: m.values() if isinstance(m, MultiRLModule) else [m]  # noqa: E731
    ptrs = lambda m: {t.data_ptr() for p in parts(m) for t in (*p.parameters(), *p.buffers()) if t.numel()}  # noqa: E731
    assert not ptrs(first) & ptrs(second)
    with torch.no_grad():
        for p in parts(first):
            p.net[0].weight.add_(1.0)
    assert toys.states_equal(second, module)
    assert all(not t.is_meta for p in parts(second) for t in (*p.parameters(), *p.buffers()))
    assert type(first) is type(second) is type(module)


def test_a_spec_loaded_again_does_not_run_its_constructor_again(reg):
    spec = toys.spec()
    spec.module_class = toys.CountedPolicy
    module = spec.build()
    reg.snapshot("counted", module)
    before = toys.CountedPolicy.setups
    loads = [reg.load("counted") for _ in range(3)]
    assert toys.CountedPolicy.setups - before <= 2  # the kept build (and, at most, its first check)
    assert all(toys.states_equal(m, module) for m in loads)


def test_a_module_holding_closures_over_itself_is_built_for_each_load(reg):
    """A copy would keep lambdas calling the kept (meta) build: such a module is built afresh each time."""
    spec = toys.spec()
    spec.module_class = toys.ClosurePolicy
    module = spec.build()
    toys.train_step(module, 1)
    reg.snapshot("closures", module)
    for _ in range(2):
        loaded = reg.load("closures")
        assert toys.states_equal(loaded, module)
        assert torch.equal(loaded.weight_sum(), module.net[0].weight.sum())
        loaded(toys.batch())
        assert loaded.hooked == [float(module.net[0].weight.detach().sum())]


@pytest.mark.parametrize("make", [lambda: toys.spec(hidden=2048).build(), lambda: toys.multi_spec(hidden=2048).build()])
def test_a_load_holds_its_verified_objects_copy_on_write(reg, make, local_storage_url):
    """A load's tensors are private maps of the verified objects, not copies: a training step writes
    only its own pages; the stored objects, other loads and a later load are as snapshotted, and the
    module outlives its objects' deletion (control: a copying load's tensors own their storage)."""
    import datetime
    import os
    import time

    module = make()
    version = reg.snapshot("cow", module).version
    reg.snapshot("cow", make())  # the latest is another version, so "cow" v1 can be deleted
    parts = lambda m: m.values() if isinstance(m, MultiRLModule) else [m]  # noqa: E731
    loads = [reg.load("cow", version) for _ in range(2)]  # built on meta, then copied from the kept build
    blobs = local_storage_url.removeprefix("file://")
    object_sizes = {os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(blobs) for f in fs}
    for loaded in loads:
        large = [t for p in parts(loaded) for t in p.parameters() if t.nbytes >= 64 << 10]  # objects of their own
        assert large and all(t.untyped_storage().nbytes() in object_sizes for t in large), "not the object's map"
    reg.delete_version("cow", version, reason="test")
    time.sleep(0.05)
    assert reg.gc(grace=datetime.timedelta(0)).reclaimed_objects
    first, second = loads
    params = [p for part in parts(first) for p in part.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.5)
    before = [p.detach().clone() for p in params]
    for part in parts(first):
        part.forward_train(toys.batch())[Columns.ACTION_DIST_INPUTS].square().sum().backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, params)), "the training step changed nothing"
    assert toys.states_equal(second, module), "a write to one load reached another"
    assert reg.store.verify().ok
    again = reg.snapshot("cow", module).version  # stores the reclaimed objects again
    assert toys.states_equal(reg.load("cow", again), module)


@pytest.mark.parametrize("alignment", [64, 8], ids=["objects-now", "objects-of-older-rlreg"])
def test_loaded_tensors_are_aligned_as_fresh_ones_so_outputs_are_bit_for_bit(reg, monkeypatch, alignment):
    """A linear layer over a 16-byte-misaligned copy of its weight rounds differently on this CPU, so
    every loaded tensor starts on a 64-byte boundary, as torch allocates: held in place where its object
    puts it there, else copied into an aligned slot (objects of older rlreg padded headers to 8 bytes)."""
    from storage import safetensors_format

    monkeypatch.setattr(safetensors_format, "DATA_ALIGNMENT", alignment)
    spec = toys.spec(hidden=37)  # odd sizes: packed tensors land at offsets that are not multiples of 64
    module = spec.build()
    toys.train_step(module, 3)
    reg.snapshot("aligned", module)
    for loaded in (reg.load("aligned"), reg.load("aligned")):
        assert all(t.data_ptr() % 64 == 0 for t in (*loaded.parameters(), *loaded.buffers()) if t.numel())
        assert toys.states_equal(loaded, module)
        batch = toys.batch()
        with torch.no_grad():
            assert torch.equal(outputs(loaded, batch), outputs(module, batch))


def test_a_version_loaded_again_is_verified_again(reg, local_storage_url):
    """The registry keeps a loaded version's manifest and state parsed (and its manifest checked); every
    byte is still hashed at each load, and other versions read their own."""
    from pathlib import Path

    from registry import IntegrityError

    first, second = toys.spec().build(), toys.spec().build()
    toys.train_step(second, 1)
    reg.snapshot("again", first)
    reg.snapshot("again", second)
    for _ in range(2):
        assert toys.states_equal(reg.load("again", 1), first) and toys.states_equal(reg.load("again", 2), second)
    for obj in (p for p in Path(local_storage_url).rglob("*") if p.is_file() and "objects" in p.parts):
        data = bytearray(obj.read_bytes())
        data[-1] ^= 0xFF
        obj.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="is damaged"):
        reg.load("again", 1)
