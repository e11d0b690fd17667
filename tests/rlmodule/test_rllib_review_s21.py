"""RLlib import/export fixes from review s21: layer counts, odd spaces, export ids and activations,
inference-only states, space decoding cost, msgpack budget."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmodule import CheckpointFormatError
from rlmodule import rllib_checkpoint as rc
from rlmodule.rllib_checkpoint import load_rllib_checkpoint
from rlmodule.rllib_writer import Call, Global, dumps

_META = json.dumps({"class_and_ctor_args_file": "class_and_ctor_args.pkl", "state_file": "module_state",
                    "ray_version": "2.60.0", "checkpoint_version": "2.1"})
_BOX4 = rc._space(gym.spaces.Box(-1, 1, (4,), np.float32))


def _ppo_ckpt(path: Path, model_config: dict, action_space=None, state=None) -> Path:
    kwargs = {"observation_space": _BOX4, "action_space": action_space or rc._space(gym.spaces.Discrete(2)),
              "inference_only": False, "learner_only": False, "model_config": model_config,
              "catalog_class": rc._RAY_CATALOG}
    path.mkdir(parents=True)
    (path / "class_and_ctor_args.pkl").write_bytes(dumps({"class": rc._RAY_PPO,
                                                          "ctor_args_and_kwargs": ((), kwargs)}))
    (path / "module_state.pkl").write_bytes(dumps(state or {}))
    (path / "metadata.json").write_text(_META)
    return path


# -- 1. many layers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [
    {"fcnet_hiddens": [1] * 65, "vf_share_layers": False},
    {"head_fcnet_hiddens": [1] * 65},
    {"fcnet_hiddens": [1] * 50, "head_fcnet_hiddens": [1] * 50, "vf_share_layers": False},
], ids=["fcnet", "head", "total"])
def test_a_checkpoint_of_many_layers_is_refused_before_any_layer_is_built(tmp_path, config, monkeypatch):
    built = []
    init = torch.nn.Linear.__init__
    monkeypatch.setattr(torch.nn.Linear, "__init__", lambda self, *a, **k: (built.append(a), init(self, *a, **k)))
    with pytest.raises(CheckpointFormatError, match=r"layers.*beyond reason: at most (64 per list|96)"):
        load_rllib_checkpoint(_ppo_ckpt(tmp_path / "c", config))
    assert built == []


def test_one_memoized_list_of_40000_layers_is_refused_quickly(tmp_path):
    import time
    hiddens = [1] * 40_000  # one list, pickled once and referenced twice (the memo)
    path = _ppo_ckpt(tmp_path / "c", {"fcnet_hiddens": hiddens, "head_fcnet_hiddens": hiddens,
                                      "vf_share_layers": False})
    assert (path / "class_and_ctor_args.pkl").stat().st_size < 100_000
    start = time.process_time()
    with pytest.raises(CheckpointFormatError, match="40,000 layers"):
        load_rllib_checkpoint(path)
    assert time.process_time() - start < 5


# -- 2. spaces gymnasium or the catalog cannot take ------------------------------------------------------

def _g(mod: str, name: str) -> Global:
    return Global(f"gymnasium.spaces.{mod}", name)


@pytest.mark.parametrize("space, message", [
    (Call(_g("discrete", "Discrete"), (10**30, None, 0)), "Discrete cannot be rebuilt.*OverflowError"),
    (Call(_g("discrete", "Discrete"), (2**63, None, 0)), "Discrete cannot be rebuilt.*OverflowError"),
    (Call(_g("discrete", "Discrete"), (2, None, 10**30)), "Discrete cannot be rebuilt.*OverflowError"),
    (Call(_g("multi_binary", "MultiBinary"), (3,)), r"unsupported action space: MultiBinary\(3\)"),
], ids=["n-1e30", "n-2**63", "start-1e30", "multibinary"])
def test_a_space_that_cannot_be_built_is_a_one_line_format_error(tmp_path, space, message):
    path = _ppo_ckpt(tmp_path / "c", {"fcnet_hiddens": [8]}, action_space=space)
    with pytest.raises(CheckpointFormatError, match=message) as info:
        load_rllib_checkpoint(path)
    assert "class_and_ctor_args.pkl" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["text", "simplex"])
def test_an_action_space_without_a_distribution_is_a_format_error(tmp_path, kind):
    from rlmodule.rllib_writer import New
    if kind == "text":
        space = New(_g("text", "Text"), {"_shape": None, "dtype": None, "_np_random": None, "min_length": 1,
                                         "max_length": 5, "_char_str": "abc"})
    else:
        space = New(Global("ray.rllib.utils.spaces.simplex", "Simplex"),
                    {"_shape": (3,), "dtype": np.dtype("float32"), "_np_random": None, "dim": 3,
                     "concentration": np.ones(3)})
    path = _ppo_ckpt(tmp_path / "c", {"fcnet_hiddens": [8]}, action_space=space)
    with pytest.raises(CheckpointFormatError, match=r"class_and_ctor_args.pkl.*unsupported action space: "
                       + ("Text" if kind == "text" else "Simplex")):
        load_rllib_checkpoint(path)


# -- 3. module ids that are the names of the files the export writes ----------------------------------

def _multi(*ids):
    from rlmodule import MultiRLModuleSpec, RLModuleSpec
    from rlmodule.ppo import PPOCatalog, PPOTorchRLModule

    def spec():
        return RLModuleSpec(module_class=PPOTorchRLModule, observation_space=gym.spaces.Box(-1, 1, (4,), np.float32),
                            action_space=gym.spaces.Discrete(2), model_config_dict={"fcnet_hiddens": [8]},
                            catalog_class=PPOCatalog)
    return MultiRLModuleSpec(module_specs={i: spec() for i in ids}).build()


@pytest.mark.parametrize("bad", ["metadata.json", "module_state.pkl", "class_and_ctor_args.pkl",
                                 "module_state.msgpack", "a/module_state.pkl", "a/metadata.json"])
def test_an_export_refuses_a_module_id_that_is_a_checkpoint_file_name_before_writing(tmp_path, bad):
    module = _multi("p0", "a", bad)
    out = tmp_path / "out"
    with pytest.raises(CheckpointFormatError, match=f"module id {bad!r}"):
        rc.save_rllib_checkpoint(module, out)
    assert not out.exists()


def test_an_export_of_plain_and_nested_ids_still_loads(tmp_path):
    module = _multi("p0", "team/p1")
    rc.save_rllib_checkpoint(module, tmp_path / "out")
    assert sorted(load_rllib_checkpoint(tmp_path / "out").keys()) == ["p0", "team/p1"]


# -- 4. activations the export writes ---------------------------------------------------------------------

def _rllib_260_activation(name):
    """RLlib 2.60's `ray.rllib.models.utils.get_activation_fn(name, framework="torch")`, verbatim in effect."""
    lower = name.lower() if isinstance(name, str) else name
    if lower in ["linear", None]:
        return None
    fn = getattr(torch.nn, name, None)
    if fn is not None:
        return fn
    found = {"swish": torch.nn.SiLU, "silu": torch.nn.SiLU, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh,
             "elu": torch.nn.ELU, "softmax": torch.nn.Softmax}.get(lower)
    if found is None:
        raise ValueError(f"Unknown activation ({name}) for framework=torch!")
    return found


def _names():
    from rlmodule.models import _ACTIVATIONS
    for key in _ACTIVATIONS:
        yield from sorted({key, key.upper(), key.title(), _ACTIVATIONS[key].__name__})


@pytest.mark.parametrize("name", list(_names()))
@pytest.mark.parametrize("where", ["fcnet_activation", "post_fcnet_activation"])
def test_every_activation_we_accept_is_exported_as_a_name_rllib_resolves_to_the_same_class(tmp_path, name, where):
    from rlmodule import RLModuleSpec
    from rlmodule.pickle_free import decode
    from rlmodule.rllib_globals import RLLIB_GLOBALS
    from rlmodule.models import get_activation
    from rlmodule.ppo import PPOCatalog, PPOTorchRLModule

    module = RLModuleSpec(module_class=PPOTorchRLModule, observation_space=gym.spaces.Box(-1, 1, (4,), np.float32),
                          action_space=gym.spaces.Discrete(2), catalog_class=PPOCatalog,
                          model_config_dict={"fcnet_hiddens": [8], "post_fcnet_hiddens": [4], where: name}).build()
    rc.save_rllib_checkpoint(module, tmp_path / "out")
    ctor = decode((tmp_path / "out" / "class_and_ctor_args.pkl").read_bytes(), RLLIB_GLOBALS)
    written = ctor["ctor_args_and_kwargs"][1]["model_config"][
        "fcnet_activation" if where == "fcnet_activation" else "head_fcnet_activation"]
    assert _rllib_260_activation(written) is type(get_activation(name))


# -- 5. a full module saved with its inference-only state -------------------------------------------------

FULL_WITH_INF_STATE = Path(__file__).parents[1] / "fixtures" / "rllib" / "ray-2.60.0" / "full_with_inf_state"


def test_rllibs_full_module_saved_with_its_inference_only_state_imports_as_inference_only():
    exp = json.loads((FULL_WITH_INF_STATE / "expected.json").read_text())
    module = load_rllib_checkpoint(FULL_WITH_INF_STATE)
    assert module.config.inference_only is True
    assert not any("critic" in k or k.startswith("vf.") for k in module.get_state())
    with torch.no_grad():
        adi = module.forward_inference({"obs": torch.tensor(exp["obs"])})["action_dist_inputs"]
    assert torch.allclose(adi, torch.tensor(exp["adi"]), atol=1e-6)


def _sep_export(tmp_path, keep):
    from rlmodule import RLModuleSpec
    from rlmodule.ppo import PPOCatalog, PPOTorchRLModule

    module = RLModuleSpec(module_class=PPOTorchRLModule, observation_space=gym.spaces.Box(-1, 1, (4,), np.float32),
                          action_space=gym.spaces.Discrete(2), catalog_class=PPOCatalog,
                          model_config_dict={"fcnet_hiddens": [8], "vf_share_layers": False}).build()
    out = tmp_path / "out"
    rc.save_rllib_checkpoint(module, out)
    state = {k: v.numpy() for k, v in module.get_state().items() if keep(k)}
    (out / "module_state.pkl").write_bytes(dumps(state))
    return module, out


def test_a_full_modules_inference_only_state_imports_as_inference_only_in_a_multi_module_too(tmp_path):
    module, out = _sep_export(tmp_path, lambda k: "critic" not in k and not k.startswith("vf."))
    multi = _multi("p0", "p1")
    rc.save_rllib_checkpoint(multi, tmp_path / "multi")
    inf = {k: v.numpy() for k, v in multi["p1"].get_state(inference_only=True).items()}
    (tmp_path / "multi" / "p1" / "module_state.pkl").write_bytes(dumps(inf))
    single = load_rllib_checkpoint(out)
    assert single.config.inference_only is True
    assert all(torch.equal(v, module.get_state()[k]) for k, v in single.get_state().items())
    loaded = load_rllib_checkpoint(tmp_path / "multi")
    assert (loaded["p0"].config.inference_only, loaded["p1"].config.inference_only) == (False, True)


def test_a_state_lacking_only_part_of_the_value_function_is_still_refused(tmp_path):
    _, out = _sep_export(tmp_path, lambda k: not k.startswith("vf."))
    with pytest.raises(CheckpointFormatError, match="lacks 2 of the module's tensors: 'vf.net"):
        load_rllib_checkpoint(out)


# -- 6. what gymnasium allocates for a Box or MultiDiscrete is charged before it is built -----------------

@pytest.mark.parametrize("how", ["new", "call"])
def test_a_box_cast_to_a_wider_dtype_is_refused_before_gymnasium_builds_it(how, monkeypatch):
    from rlmodule import PickleRefusedError
    from rlmodule.pickle_free import decode
    from rlmodule.rllib_globals import RLLIB_GLOBALS
    from rlmodule.rllib_writer import New

    built = []
    init = gym.spaces.Box.__init__
    monkeypatch.setattr(gym.spaces.Box, "__init__", lambda self, *a, **k: (built.append(a), init(self, *a, **k))[1])
    n = 1 << 20
    low = np.zeros(n, np.int8)  # one array, memoized: low and high, cast to float64 + two masks: 18 n bytes
    if how == "new":
        box = New(_g("box", "Box"), {"low": low, "high": low, "_shape": (n,), "dtype": np.dtype("float64"),
                                     "_np_random": None, "bounded_below": None, "bounded_above": None})
    else:
        box = Call(_g("box", "Box"), (low, low, (n,), "float64"))
    data = dumps({"observation_space": box})
    with pytest.raises(PickleRefusedError, match="far more than its size"):
        decode(data, RLLIB_GLOBALS, what="ctor")
    assert built == []
    small = dumps({"o": rc._space(gym.spaces.Box(-1, 1, (84, 84, 3), np.float32))})
    assert decode(small, RLLIB_GLOBALS)["o"] == gym.spaces.Box(-1, 1, (84, 84, 3), np.float32)


def test_a_multi_discrete_cast_to_a_wider_dtype_is_refused_before_gymnasium_builds_it(monkeypatch):
    from rlmodule import PickleRefusedError
    from rlmodule.pickle_free import decode
    from rlmodule.rllib_globals import RLLIB_GLOBALS
    from rlmodule.rllib_writer import New

    built = []
    init = gym.spaces.MultiDiscrete.__init__
    monkeypatch.setattr(gym.spaces.MultiDiscrete, "__init__",
                        lambda self, *a, **k: (built.append(a), init(self, *a, **k))[1])
    n = 1 << 20
    space = New(_g("multi_discrete", "MultiDiscrete"), {"nvec": np.full(n, 2, np.int8), "dtype": np.dtype("int64"),
                                                        "_shape": (n,), "_np_random": None, "start": None})
    with pytest.raises(PickleRefusedError, match="far more than its size"):
        decode(dumps({"a": space}), RLLIB_GLOBALS, what="ctor")
    assert built == []


# -- 7. a msgpack state of many small maps or lists -------------------------------------------------------

@pytest.mark.parametrize("payload", [[{}] * 300_000, [[]] * 300_000], ids=["maps", "lists"])
def test_a_msgpack_state_of_many_empty_containers_is_refused_as_it_decodes(tmp_path, payload, monkeypatch):
    msgpack = pytest.importorskip("msgpack")
    data = msgpack.packb(payload)
    calls = []
    unpackb = msgpack.unpackb

    def spy(*a, **k):
        calls.append(k)
        return unpackb(*a, **k)
    monkeypatch.setattr(msgpack, "unpackb", spy)
    with pytest.raises(CheckpointFormatError, match=r"module_state.msgpack holds more than [\d,]+ maps and lists"):
        rc._decode_msgpack(data, "file:///x/module_state.msgpack")
    assert calls and "list_hook" in calls[0]  # refused while decoding, not after the whole list is built


def test_an_array_shape_past_int64_is_refused_without_a_numpy_warning():
    """np.prod of the shape wrapped around int64 and printed a RuntimeWarning line before the one-line error."""
    import warnings

    import numpy as np

    from rlmodule import pickle_free

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="do not fill shape"):
            pickle_free._array(b"", np.dtype("f4"), (2**33, 2**33), "C")
