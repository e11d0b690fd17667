"""MultiRLModule and MultiRLModuleSpec: the mapping API, forward passes, state, dicts."""

from __future__ import annotations

import json

import pytest
import torch

from rlmodule import (
    MultiRLModule, MultiRLModuleConfig, MultiRLModuleSpec, RLModuleSpec, UntrustedClassError,
    spec_from_dict, spec_to_dict,
)
from rlmodule_toys import ACT_SPACE, OBS_SPACE, CountingModule, ToyTorchModule, toy_batch


@pytest.fixture
def multi_spec(toy_spec):
    return MultiRLModuleSpec(module_specs={
        "p0": toy_spec,
        "p1": RLModuleSpec(module_class=ToyTorchModule, observation_space=OBS_SPACE,
                           action_space=ACT_SPACE, inference_only=True)})


def test_mapping_api(multi_spec):
    multi = multi_spec.build()
    assert list(multi.keys()) == ["p0", "p1"] and len(multi) == 2 and "p0" in multi
    assert [m for _, m in multi.items()] == list(multi.values())
    assert multi.get("nope", "default") == "default"
    with pytest.raises(KeyError, match=r"Module with module_id nope not found. Available modules: "):
        multi["nope"]
    assert multi.foreach_module(lambda mid, m: mid) == ["p0", "p1"]
    assert multi.foreach_module(lambda mid, m: type(m).__name__, return_dict=True) == {
        "p0": "ToyTorchModule", "p1": "ToyTorchModule"}
    assert multi.framework == "torch"
    assert multi.config.inference_only is False


def test_add_and_remove_modules(multi_spec, toy_spec):
    multi = multi_spec.build()
    new = toy_spec.build()
    with pytest.raises(ValueError, match="Module ID p0 already exists. If your intention is to override"):
        multi.add_module("p0", new)
    multi.add_module("p0", new, override=True)
    assert multi["p0"] is new and multi.config.modules["p0"] == RLModuleSpec.from_module(new)
    multi.add_module("p2", new)
    assert "p2" in multi.config.modules
    multi.remove_module("p2")
    assert "p2" not in multi and "p2" not in multi.config.modules
    with pytest.raises(KeyError, match="Module with module_id p2 not found"):
        multi.remove_module("p2")
    multi.remove_module("p2", raise_err_if_not_found=False)
    with pytest.warns(UserWarning, match="PolicyID `a/b` not valid"):
        multi.add_module("a/b", new)


def test_adding_a_learner_module_clears_inference_only(toy_spec):
    toy_spec.inference_only = True
    multi = MultiRLModuleSpec(module_specs={"a": toy_spec}).build()
    assert multi.config.inference_only is True
    toy_spec.inference_only = False
    multi.add_module("b", toy_spec.build())
    assert multi.config.inference_only is False


def test_forward_passes_per_module(multi_spec):
    multi = multi_spec.build()
    batch = {"p0": toy_batch(2), "p1": toy_batch(3)}
    out = multi.forward_inference(batch)
    assert out["p0"]["action_dist_inputs"].shape == (2, 3)
    assert out["p1"]["action_dist_inputs"].shape == (3, 3)
    assert set(multi.forward_train({"p0": toy_batch()})) == {"p0"}
    with pytest.raises(KeyError, match="Module with module_id zz not found"):
        multi.forward_exploration({"zz": toy_batch()})


def test_state_keyed_by_module_id(multi_spec):
    multi = multi_spec.build()
    state = multi.get_state()
    assert set(state) == {"p0", "p1"}
    assert set(multi.get_state(components="p1")) == {"p1"}
    assert set(multi.get_state(not_components=["p1"])) == {"p0"}
    assert "vf.weight" not in multi.get_state(inference_only=True)["p0"]
    torch.manual_seed(3)
    other = multi_spec.build()
    other.set_state({"p1": state["p1"], "unknown": {}})
    assert torch.equal(other["p1"].pi.weight, multi["p1"].pi.weight)
    assert not torch.equal(other["p0"].pi.weight, multi["p0"].pi.weight)
    assert [n for n, _ in multi.get_checkpointable_components()] == ["p0", "p1"]


def test_keyword_constructor(toy_spec):
    multi = MultiRLModule(rl_module_specs={"a": toy_spec})
    assert list(multi.keys()) == ["a"] and multi.config.modules == {"a": toy_spec}


def test_spec_errors_and_helpers(multi_spec, toy_spec):
    with pytest.raises(ValueError, match="Module_specs cannot be None"):
        MultiRLModuleSpec()
    with pytest.raises(ValueError, match="the module_specs should be a dictionary"):
        MultiRLModuleSpec(module_specs=toy_spec).build()
    assert multi_spec.build("p1").config.inference_only is True
    assert "p0" in multi_spec and multi_spec["p0"] is toy_spec
    assert multi_spec.as_multi_rl_module_spec() is multi_spec
    multi_spec.remove_modules("p1")
    assert list(multi_spec.module_specs) == ["p0"]
    with pytest.raises(ValueError, match="`as_multi_agent` has been deprecated"):
        multi_spec.as_multi_agent()
    with pytest.raises(ValueError, match="`get_marl_config` has been deprecated"):
        multi_spec.get_marl_config()


def test_spec_update_and_add_modules(multi_spec, toy_spec):
    counting = RLModuleSpec(module_class=CountingModule, observation_space=OBS_SPACE,
                            action_space=ACT_SPACE)
    multi_spec.add_modules({"p0": counting}, override=False)
    assert multi_spec["p0"].module_class is CountingModule
    multi_spec.update(MultiRLModuleSpec(module_specs={"p2": counting}))
    assert list(multi_spec.module_specs) == ["p0", "p1", "p2"]
    multi_spec.update(RLModuleSpec(model_config_dict={"z": 1}))
    assert multi_spec["p1"].model_config_dict == {"z": 1}
    assert multi_spec["p0"].model_config_dict == {"hidden": 6}


def test_spec_dicts_round_trip(multi_spec):
    multi_spec.load_state_path, multi_spec.modules_to_load = "memory://x", {"p1"}
    d = json.loads(json.dumps(spec_to_dict(multi_spec)))
    assert d["multi_rl_module_class"] == "rlmodule.multi_rl_module.MultiRLModule"
    assert d["modules_to_load"] == ["p1"]
    assert spec_from_dict(d) == multi_spec
    later = {**d, "rl_module_specs": d.pop("module_specs")}
    assert MultiRLModuleSpec.from_dict(later) == multi_spec
    single = spec_to_dict(multi_spec["p0"])
    assert spec_from_dict(single) == multi_spec["p0"]


def test_spec_to_dict_of_built_modules(multi_spec):
    multi = multi_spec.build()
    d = spec_to_dict(multi)
    assert spec_from_dict(d) == MultiRLModuleSpec.from_module(multi)
    assert spec_from_dict(spec_to_dict(multi["p0"])) == RLModuleSpec.from_module(multi["p0"])
    with pytest.raises(TypeError, match="spec_to_dict expects an RLModule or a spec, got int"):
        spec_to_dict(3)
    with pytest.raises(TypeError, match="spec_from_dict expects a dict, got list"):
        spec_from_dict([])


def test_multi_spec_from_dict_refuses_untrusted_class(multi_spec):
    d = spec_to_dict(multi_spec)
    d["multi_rl_module_class"] = "rlmodule_toys.ToyTorchModule"
    with pytest.raises(UntrustedClassError, match="is not a subclass of rlmodule.multi_rl_module.MultiRLModule"):
        spec_from_dict(d)


def test_config_dict_round_trip(multi_spec):
    config = multi_spec.get_multi_rl_module_config()
    assert MultiRLModuleConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.get_catalog() is None
