"""Checkpoints without pickle: layout, bit-exact round trips, components and each refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rlmodule import (
    CheckpointFormatError, CheckpointNotFoundError, MultiRLModule, MultiRLModuleSpec, RLModule,
    RLModuleSpec, StateMismatchError, UntrustedClassError,
)
from rlmodule.checkpoints import CheckpointError, encode_value
from storage import Location
from rlmodule_toys import ACT_SPACE, OBS_SPACE, CountingModule, ToyTorchModule, toy_batch


def _same_outputs(a, b, batch) -> None:
    with torch.no_grad():
        for fwd in ("forward_inference", "forward_exploration", "forward_train"):
            out_a, out_b = getattr(a, fwd)(batch), getattr(b, fwd)(batch)
            assert out_a.keys() == out_b.keys()
            for k in out_a:
                assert torch.equal(out_a[k], out_b[k]), (fwd, k)


def _same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_save_writes_rllib_layout_with_json_and_safetensors(toy_module, ckpt_url):
    url = toy_module.save_to_path(ckpt_url)
    loc = Location(url)
    assert loc.listdir() == ["class_and_ctor_args.json", "metadata.json",
                             "module_state.json", "module_state.safetensors"]
    meta = loc.read_json("metadata.json")
    assert meta["class_and_ctor_args_file"] == "class_and_ctor_args.json"
    assert meta["state_file"] == "module_state.safetensors"
    assert meta["checkpoint_version"] == "2.0" and meta["format"] == "rlreg.checkpoint/1"
    assert "rlreg_version" in meta
    ctor = loc.read_json("class_and_ctor_args.json")
    assert ctor["class"] == "rlmodule_toys.ToyTorchModule"
    assert ctor["ctor_kwargs"] == {}
    assert ctor["ctor_args"][0]["$object"] == "rlmodule.rl_module.RLModuleConfig"
    assert ctor["ctor_args"][0]["value"]["model_config_dict"] == {"hidden": 6}
    tensors = loc.load_tensors("module_state.safetensors")
    assert tensors["bf"].dtype == torch.bfloat16 and tensors["mask"].dtype == torch.bool


def test_round_trip_is_bit_exact(toy_module, ckpt_url):
    url = toy_module.save_to_path(ckpt_url)
    restored = RLModule.from_checkpoint(url)
    assert type(restored) is ToyTorchModule
    assert restored.config == toy_module.config
    _same_state(restored.get_state(), toy_module.get_state())
    _same_outputs(restored, toy_module, toy_batch())


def test_restore_into_existing_module(toy_module, toy_spec, ckpt_url):
    toy_module.save_to_path(ckpt_url)
    other = toy_spec.build()
    other.restore_from_path(ckpt_url)
    _same_outputs(other, toy_module, toy_batch(seed=3))


def test_save_to_temp_folder_when_path_is_none(toy_module):
    url = toy_module.save_to_path()
    _same_outputs(RLModule.from_checkpoint(url), toy_module, toy_batch())


def test_json_state_and_numpy_leaves_round_trip(ckpt_url):
    module = CountingModule(observation_space=OBS_SPACE, action_space=ACT_SPACE)
    module.count, module.label = 3, "trained"
    module.table[:] = [[1.5, 2.5], [3.5, 4.5]]
    url = module.save_to_path(ckpt_url)
    assert Location(url).read_json("module_state.json") == {
        "count": 3, "meta": {"label": "trained", "table": {"$tensor": "numpy"}}}
    restored = RLModule.from_checkpoint(url)
    assert (restored.count, restored.label) == (3, "trained")
    assert isinstance(restored.table, np.ndarray) and restored.table.dtype == np.float32
    np.testing.assert_array_equal(restored.table, module.table)


def test_from_checkpoint_refuses_a_class_not_below_cls(toy_module, ckpt_url):
    url = toy_module.save_to_path(ckpt_url)
    with pytest.raises(UntrustedClassError, match="is not a subclass of rlmodule.multi_rl_module.MultiRLModule"):
        MultiRLModule.from_checkpoint(url)


def _edit_json(url, name, fn):
    loc = Location(url)
    loc.write_json(name, fn(loc.read_json(name)))


def test_untrusted_class_in_checkpoint_is_refused(toy_module, ckpt_url):
    url = toy_module.save_to_path(ckpt_url)
    _edit_json(url, "class_and_ctor_args.json", lambda d: {**d, "class": "evilpkg.payload.Module"})
    with pytest.raises(UntrustedClassError) as e:
        RLModule.from_checkpoint(url)
    assert str(e.value) == (
        "class 'evilpkg.payload.Module' is not trusted: module 'evilpkg.payload' is not imported "
        "and matches no trusted prefix; to trust it, import evilpkg.payload before loading, set "
        "RLREG_TRUSTED_MODULES=evilpkg or pass trusted_modules=['evilpkg']")


def test_untrusted_catalog_class_in_ctor_args_is_refused(toy_module, ckpt_url):
    url = toy_module.save_to_path(ckpt_url)

    def edit(d):
        d["ctor_args"][0]["value"]["catalog_class_path"] = "evilpkg.cat.Catalog"
        return d

    _edit_json(url, "class_and_ctor_args.json", edit)
    with pytest.raises(UntrustedClassError, match="'evilpkg.cat.Catalog' is not trusted"):
        RLModule.from_checkpoint(url)


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="checkpoint folder .*nothing-here not found"):
        RLModule.from_checkpoint(str(tmp_path / "nothing-here"))


@pytest.mark.parametrize("missing", ["metadata.json", "module_state.safetensors",
                                     "module_state.json", "class_and_ctor_args.json"])
def test_partial_checkpoint_is_refused_and_module_unchanged(toy_module, toy_spec, ckpt_url, missing):
    url = toy_module.save_to_path(ckpt_url)
    loc = Location(url)
    loc.fs.rm(loc._join(missing))
    with pytest.raises(CheckpointNotFoundError,
                       match=f"is not a complete checkpoint: {missing} is missing"):
        RLModule.from_checkpoint(url)
    if missing != "class_and_ctor_args.json":
        other = toy_spec.build()
        before = other.get_state()
        with pytest.raises(CheckpointNotFoundError, match=f"{missing} is missing"):
            other.restore_from_path(url)
        _same_state(other.get_state(), before)


@pytest.mark.parametrize("field,value,message", [
    ("checkpoint_version", "9.9", "has checkpoint_version '9.9'; this rlreg reads '2.0'"),
    ("format", "rlreg.checkpoint/7", "has format 'rlreg.checkpoint/7'; this rlreg reads "
                                     "'rlreg.checkpoint/1'"),
])
def test_unknown_format_version_is_refused(toy_module, ckpt_url, field, value, message):
    url = toy_module.save_to_path(ckpt_url)
    _edit_json(url, "metadata.json", lambda d: {**d, field: value})
    with pytest.raises(CheckpointFormatError, match=message.replace("(", r"\(")):
        RLModule.from_checkpoint(url)


def test_rllib_pickle_checkpoint_is_not_read(tmp_path):
    folder = tmp_path / "rllib"
    folder.mkdir()
    (folder / "metadata.json").write_text(json.dumps({
        "class_and_ctor_args_file": "class_and_ctor_args.pkl", "state_file": "module_state.pkl",
        "ray_version": "2.35.0", "checkpoint_version": "2.0"}))
    (folder / "class_and_ctor_args.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(CheckpointFormatError, match="it is an RLlib 2.35.0 checkpoint .pickle files., which "
                                                    "RLModule.from_checkpoint does not read"):
        RLModule.from_checkpoint(str(folder))


def test_wrong_shape_in_checkpoint_is_refused(toy_module, toy_spec, tmp_path):
    url = toy_module.save_to_path(str(tmp_path / "a"))
    other = RLModuleSpec(module_class=ToyTorchModule, observation_space=OBS_SPACE,
                         action_space=ACT_SPACE, model_config_dict={"hidden": 4}).build()
    before = other.get_state()
    with pytest.raises(StateMismatchError,
                       match=r"state key 'encoder.weight': shape \(6, 5\) does not fit the "
                             r"module's \(4, 5\)"):
        other.restore_from_path(url)
    _same_state(other.get_state(), before)


def test_wrong_dtype_in_checkpoint_is_refused(toy_module, toy_spec, tmp_path):
    loc = Location(str(tmp_path / "a"))
    toy_module.save_to_path(loc)
    tensors = loc.load_tensors("module_state.safetensors")
    tensors["scale"] = tensors["scale"].float()
    loc.save_tensors("module_state.safetensors", tensors)
    other = toy_spec.build()
    before = other.get_state()
    with pytest.raises(StateMismatchError,
                       match="state key 'scale': dtype float32 does not fit the module's float64"):
        other.restore_from_path(loc.url)
    _same_state(other.get_state(), before)  # the keys before 'scale' fit, and none was set either


class PickyModule(ToyTorchModule):
    """Refuses in its own check_state what the stock checks accept."""

    def check_state(self, state):
        super().check_state(state)
        if float(state["scale"].sum()) > 1e6:
            raise StateMismatchError("state key 'scale': too large for PickyModule")


def test_a_restore_of_one_module_runs_its_own_check_state(toy_spec, tmp_path):
    """The separate check_state pass is skipped only where restore_state checks the same itself first."""
    toy_spec.module_class = PickyModule
    module = toy_spec.build()
    with torch.no_grad():
        module.scale.fill_(1e9)
    url = module.save_to_path(str(tmp_path / "a"))
    other = toy_spec.build()
    assert not other.restore_state_checks
    before = other.get_state()
    with pytest.raises(StateMismatchError, match="too large for PickyModule"):
        other.restore_from_path(url)
    _same_state(other.get_state(), before)
    plain = RLModuleSpec(module_class=ToyTorchModule, observation_space=OBS_SPACE, action_space=ACT_SPACE,
                         model_config_dict=toy_spec.model_config_dict).build()
    assert plain.restore_state_checks


def test_callable_in_model_config_cannot_be_saved(toy_spec, tmp_path):
    toy_spec.model_config_dict = {"hidden": 6, "init": {"fn": print}}
    module = toy_spec.build()
    with pytest.raises(TypeError, match=r"model_config_dict\['init'\]\['fn'\] is a callable"):
        module.save_to_path(str(tmp_path / "x"))


def test_ctor_values_that_are_not_json_are_refused():
    with pytest.raises(CheckpointError, match=r"ctor_kwargs\['lock'\]: a object cannot be stored"):
        encode_value({"lock": object()}, "ctor_kwargs")


def test_build_honours_load_state_path(toy_module, toy_spec, ckpt_url):
    url = toy_module.save_to_path(ckpt_url)
    toy_spec.load_state_path = url
    _same_outputs(toy_spec.build(), toy_module, toy_batch())


def _multi(toy_spec):
    torch.manual_seed(1)
    return MultiRLModuleSpec(module_specs={
        "p0": toy_spec, "p1": RLModuleSpec(module_class=ToyTorchModule,
                                           observation_space=OBS_SPACE, action_space=ACT_SPACE)
    }).build()


def test_multi_module_layout_and_round_trip(toy_spec, ckpt_url):
    multi = _multi(toy_spec)
    url = multi.save_to_path(ckpt_url)
    loc = Location(url)
    assert loc.listdir() == ["class_and_ctor_args.json", "metadata.json", "module_state.json",
                             "module_state.safetensors", "p0", "p1"]
    assert loc.read_json("module_state.json") == {}
    restored = RLModule.from_checkpoint(url)
    assert type(restored) is MultiRLModule and set(restored.keys()) == {"p0", "p1"}
    for mid in ("p0", "p1"):
        _same_outputs(restored[mid], multi[mid], toy_batch())
    single = RLModule.from_checkpoint(loc.child("p1").url)
    _same_outputs(single, multi["p1"], toy_batch())


def test_restore_one_component_of_a_multi_module(toy_spec, ckpt_url):
    source = _multi(toy_spec)
    url = source.save_to_path(ckpt_url)
    torch.manual_seed(99)
    target = _multi(toy_spec)
    for p in target["p0"].parameters():
        torch.nn.init.normal_(p)
    p0_before = target["p0"].get_state()
    target.restore_from_path(Location(url).child("p1").url, component="p1")
    _same_state(target["p1"].get_state(), source["p1"].get_state())
    _same_state(target["p0"].get_state(), p0_before)


def test_multi_restore_skips_missing_module_folders(toy_spec, tmp_path):
    source = _multi(toy_spec)
    loc = Location(str(tmp_path / "m"))
    source.save_to_path(loc)
    loc.fs.rm(loc._join("p0"), recursive=True)
    torch.manual_seed(5)
    target = _multi(toy_spec)
    p0_before = target["p0"].get_state()
    target.restore_from_path(loc.url)
    _same_state(target["p0"].get_state(), p0_before)
    _same_state(target["p1"].get_state(), source["p1"].get_state())


def test_multi_spec_build_honours_load_state_path_and_modules_to_load(toy_spec, tmp_path):
    source = _multi(toy_spec)
    url = source.save_to_path(str(tmp_path / "m"))
    spec = MultiRLModuleSpec.from_module(source)
    spec.load_state_path, spec.modules_to_load = url, {"p1"}
    torch.manual_seed(123)
    built = spec.build()
    _same_state(built["p1"].get_state(), source["p1"].get_state())
    assert not torch.equal(built["p0"].encoder.weight, source["p0"].encoder.weight)
    spec.modules_to_load = None
    built = spec.build()
    for mid in ("p0", "p1"):
        _same_state(built[mid].get_state(), source[mid].get_state())
    assert spec.build("p1").get_state().keys() == source["p1"].get_state().keys()
    _same_state(spec.build("p1").get_state(), source["p1"].get_state())


def test_per_module_load_state_path_wins(toy_spec, tmp_path):
    source = _multi(toy_spec)
    url = source.save_to_path(str(tmp_path / "m"))
    torch.manual_seed(7)
    other = toy_spec.build()
    other_url = other.save_to_path(str(tmp_path / "single"))
    spec = MultiRLModuleSpec.from_module(source)
    spec.load_state_path = url
    spec.module_specs["p0"].load_state_path = other_url
    built = spec.build()
    _same_state(built["p0"].get_state(), other.get_state())
    _same_state(built["p1"].get_state(), source["p1"].get_state())


def test_modules_to_load_with_unknown_id_is_refused(toy_spec, tmp_path):
    source = _multi(toy_spec)
    spec = MultiRLModuleSpec.from_module(source)
    spec.load_state_path = source.save_to_path(str(tmp_path / "m"))
    spec.modules_to_load = {"p9"}
    with pytest.raises(ValueError, match=r"modules_to_load names unknown module ids \['p9'\]"):
        spec.build()


def test_save_with_given_state_does_not_mutate_it(toy_spec, tmp_path):
    multi = _multi(toy_spec)
    state = multi.get_state()
    keys = set(state)
    multi.save_to_path(str(tmp_path / "m"), state=state)
    assert set(state) == keys


@pytest.mark.s3
def test_round_trip_on_s3(toy_spec, s3_bucket):
    multi = _multi(toy_spec)
    url = multi.save_to_path(f"{s3_bucket}/ckpts/multi")
    assert url.startswith("s3://")
    restored = RLModule.from_checkpoint(url)
    for mid in ("p0", "p1"):
        _same_outputs(restored[mid], multi[mid], toy_batch())
    spec = MultiRLModuleSpec.from_module(multi)
    spec.load_state_path, spec.modules_to_load = url, {"p0"}
    torch.manual_seed(11)
    _same_state(spec.build()["p0"].get_state(), multi["p0"].get_state())


def test_fresh_process_needs_trust_to_load_a_foreign_class(toy_module, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    url = toy_module.save_to_path(str(tmp_path / "ckpt"))
    script = f"""
import os, sys
from rlmodule import RLModule, UntrustedClassError
try:
    RLModule.from_checkpoint({url!r})
except UntrustedClassError as e:
    print("REFUSED", e)
print("imported before trust:", "rlmodule_toys" in sys.modules)
os.environ["RLREG_TRUSTED_MODULES"] = "rlmodule_toys"
m = RLModule.from_checkpoint({url!r})
print("LOADED", type(m).__name__)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    env.pop("RLREG_TRUSTED_MODULES", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), timeout=120)
    assert out.returncode == 0, out.stderr
    assert ("REFUSED class 'rlmodule_toys.ToyTorchModule' is not trusted: module 'rlmodule_toys' "
            "is not imported") in out.stdout
    assert "imported before trust: False" in out.stdout
    assert "LOADED ToyTorchModule" in out.stdout


def test_bad_tensor_in_one_module_leaves_every_module_unchanged(toy_spec, tmp_path):
    source = _multi(toy_spec)
    loc = Location(str(tmp_path / "m"))
    source.save_to_path(loc)
    p1 = loc.child("p1")
    tensors = p1.load_tensors("module_state.safetensors")
    tensors["steps"] = tensors["steps"].long()
    p1.save_tensors("module_state.safetensors", tensors)
    torch.manual_seed(8)
    target = _multi(toy_spec)
    before = {mid: target[mid].get_state() for mid in ("p0", "p1")}
    with pytest.raises(StateMismatchError, match="state key 'steps': dtype int64 does not fit"):
        target.restore_from_path(loc.url)
    for mid in ("p0", "p1"):
        _same_state(target[mid].get_state(), before[mid])


class _SelfRestoring(CountingModule):
    restored_from = None

    def restore_from_path(self, path, *, component=None, **kwargs):
        type(self).restored_from = getattr(path, "url", str(path))


def test_component_with_its_own_restore_logic_is_called(tmp_path):
    multi = MultiRLModuleSpec(module_specs={"c": RLModuleSpec(
        module_class=_SelfRestoring, observation_space=OBS_SPACE, action_space=ACT_SPACE)}).build()
    url = multi.save_to_path(str(tmp_path / "m"))
    multi.restore_from_path(url)
    assert _SelfRestoring.restored_from.endswith("/m/c")
