"""RLlib import/export fixes: env-runner checkpoints (seeded spaces), hostile pickles that crashed or
amplified, malformed state that raised tracebacks, 0-d tensors and `encoder_latent_dim` on export."""

from __future__ import annotations

import json
import math
import pickle
import pickletools
import shutil
import struct
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmodule import CheckpointFormatError, PickleRefusedError, StateMismatchError
from rlmodule.pickle_free import decode
from rlmodule.ppo import PPOCatalog, PPOTorchRLModule
from rlmodule.rl_module import RLModuleConfig
from rlmodule.rllib_checkpoint import load_rllib_checkpoint, save_rllib_checkpoint
from rlmodule.rllib_globals import RLLIB_GLOBALS
from rlmodule.rllib_writer import Call, Global, New, dumps

ENVRUNNER = Path(__file__).parent / "fixtures" / "ray-2.60.0-envrunner"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "rllib"
CARTPOLE = FIXTURES / "ray-2.60.0" / "ppo_cartpole"
ROOT = Path(__file__).parents[2]


def _copy(tmp_path, src=CARTPOLE) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


def _su(text: str) -> bytes:  # SHORT_BINUNICODE
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


# -- 1. env runner checkpoints: spaces with a numpy Generator --------------------------------------

def test_a_real_env_runner_checkpoint_with_seeded_spaces_imports():
    ctor = (ENVRUNNER / "class_and_ctor_args.pkl").read_bytes()
    assert b"__generator_ctor" in ctor and b"__pyx_unpickle_SeedSequence" in ctor  # what it is about
    exp = json.loads((ENVRUNNER / "expected.json").read_text())
    module = load_rllib_checkpoint(ENVRUNNER)
    assert type(module) is PPOTorchRLModule and module.config.inference_only is exp["inference_only"]
    assert module.config.observation_space == gym.make("CartPole-v1").observation_space
    with torch.no_grad():
        logits = module.forward_inference({"obs": torch.tensor(exp["obs"])})["action_dist_inputs"]
    assert torch.equal(logits, torch.tensor(exp["action_dist_inputs"]))


@pytest.mark.parametrize("bit_generator", [None, np.random.MT19937, np.random.PCG64DXSM,
                                           np.random.Philox, np.random.SFC64])
def test_sampled_and_seeded_spaces_decode_without_their_generator(bit_generator):
    spaces = [gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(4, start=1),
              gym.spaces.MultiDiscrete([2, 3]), gym.spaces.MultiBinary(3),
              gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), gym.spaces.Tuple([gym.spaces.Discrete(2)])]
    for i, space in enumerate(spaces):
        space.seed(i)
        space.sample()
        if bit_generator is not None:
            space._np_random = np.random.Generator(bit_generator(i))
    out = decode(pickle.dumps(spaces, protocol=5), RLLIB_GLOBALS)
    assert out == spaces and [type(s) for s in out] == [type(s) for s in spaces]
    assert all(s._np_random is None for s in out)  # the generator is not recorded


def _legacy(ctor_name: str, args: tuple, state):
    """Pickles as numpy 1.x pickled a Generator: `__generator_ctor("PCG64")` + BUILD(state dict)."""
    import numpy.random._pickle as numpy_pickle

    class Legacy:
        def __reduce__(self):
            return getattr(numpy_pickle, ctor_name), args, state

    return Legacy()


def test_numpy_1_generators_decode_and_odd_generator_state_is_refused():
    box = gym.spaces.Box(-1, 1, (2,))
    box._np_random = _legacy("__generator_ctor", ("PCG64",), np.random.PCG64(3).state)
    assert decode(pickle.dumps(box, protocol=2), RLLIB_GLOBALS) == gym.spaces.Box(-1, 1, (2,))
    box._np_random = _legacy("__generator_ctor", ("Evil",), np.random.PCG64(3).state)
    with pytest.raises(PickleRefusedError, match="'Evil' is not a numpy bit generator"):
        decode(pickle.dumps(box), RLLIB_GLOBALS)
    box._np_random = _legacy("__generator_ctor", ("PCG64",), {"bit_generator": "PCG64",
                                                            "state": {"x": np.zeros(1, "U1")}})
    with pytest.raises(PickleRefusedError, match="random generator state holds a <U1 array"):
        decode(pickle.dumps(box), RLLIB_GLOBALS)
    box._np_random = _legacy("__bit_generator_ctor", ("PCG64",), None)  # not a Generator
    with pytest.raises(PickleRefusedError, match="'_np_random' is a numpy BitGenerator, not a numpy"):
        decode(pickle.dumps(box), RLLIB_GLOBALS)
    box._np_random = 5
    with pytest.raises(PickleRefusedError, match="'_np_random' is a value of type int, not a numpy"):
        decode(pickle.dumps(box), RLLIB_GLOBALS)


# -- 2. and 5. what is hashed is flat: no deep recursion, no unhashable members --------------------

DEEP_SET = """
import sys
from rlmodule.pickle_free import decode
from rlmodule.rllib_globals import RLLIB_GLOBALS
from rlmodule import PickleRefusedError
n = 1_000_000
blob = (b"\\x80\\x04\\x8c\\x08builtins\\x8c\\x03set\\x93" + b"]N" + b"\\x85" * n + b"a" + b"\\x85R.")
try:
    decode(blob, RLLIB_GLOBALS)
except PickleRefusedError as e:
    print("refused:", e)
"""


def test_a_set_of_a_tuple_nested_a_million_deep_is_refused_not_a_segfault():
    done = subprocess.run([sys.executable, "-c", DEEP_SET], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert "refused:" in done.stdout and "a set member of type tuple is not allowed" in done.stdout


def test_deep_or_unhashable_set_members_and_ordered_dict_keys_are_refused():
    deep: tuple = ()
    for _ in range(50):
        deep = (deep,)
    array = np.zeros(2, np.float32)
    cases = {
        "set member of type tuple": Call(Global("builtins", "set"), ([deep],)),
        "frozenset member of type _Pending": Call(Global("builtins", "frozenset"), ([array],)),
        "set member of type _Pending": Call(Global("builtins", "set"), ([array],)),
        "OrderedDict key of type _Pending": Call(Global("collections", "OrderedDict"), ([(array, 1)],)),
        "OrderedDict key of type tuple": Call(Global("collections", "OrderedDict"), ([(deep, 1)],)),
    }
    for message, payload in cases.items():
        with pytest.raises(PickleRefusedError, match=message):
            decode(dumps({"w": payload}), RLLIB_GLOBALS)
    flat = decode(dumps(Call(Global("collections", "OrderedDict"), ([(("a", 1), 2), ("b", 3)],))),
                  RLLIB_GLOBALS)
    assert flat == OrderedDict([(("a", 1), 2), ("b", 3)])


# -- 3. a small file cannot unfold into a large one -------------------------------------------------

def test_one_byte_string_reused_by_many_arrays_is_refused_before_it_is_copied():
    raw = 1 << 20
    body = bytearray(b"\x80\x04")
    body += _su("numpy._core.numeric") + _su("_frombuffer") + b"\x93\x94" + b"0"  # memo 0
    body += _su("numpy") + _su("dtype") + b"\x93" + _su("f4") + b"\x85R\x94" + b"0"  # memo 1
    body += b"B" + struct.pack("<I", raw) + b"\0" * raw + b"\x94" + b"0"  # memo 2: the bytes
    body += b"}("
    for i in range(64):  # 64 MiB of arrays from a 1 MiB file
        body += _su(f"k{i}") + b"h\x00(h\x02h\x01J" + struct.pack("<i", raw // 4) + b"\x85" + _su("C") + b"tR"
    body += b"u."
    with pytest.raises(PickleRefusedError, match=r"far more than its size .* 'billion laughs'"):
        decode(bytes(body), RLLIB_GLOBALS)
    text = "x" * raw  # the same through protocol 2's bytes: _codecs.encode of one memoised str
    many = [Call(Global("_codecs", "encode"), (text, "latin1")) for _ in range(64)]
    with pytest.raises(PickleRefusedError, match="far more than its size"):
        decode(dumps(many), RLLIB_GLOBALS)


def test_a_billion_laughs_of_shared_lists_is_refused_quickly(tmp_path):
    x: list = [0]
    for _ in range(40):
        x = [x, x]
    blob = pickle.dumps({"fcnet_hiddens": [8], "junk": x})
    assert len(blob) < 2000
    with pytest.raises(PickleRefusedError, match="far more than its size"):
        decode(blob, RLLIB_GLOBALS)
    shallow: list = [0]
    for _ in range(5):  # a little sharing is fine
        shallow = [shallow, shallow]
    assert decode(pickle.dumps(shallow), RLLIB_GLOBALS) == shallow


def _league(n: int, space) -> dict:
    """class_and_ctor_args of a MultiRLModule whose `n` policies share one space object."""
    rllib = "ray.rllib.core.rl_module"
    spec = {"module_class": Global("ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module",
                                   "DefaultPPOTorchRLModule"),
            "observation_space": space, "action_space": gym.spaces.Discrete(5),
            "inference_only": False, "learner_only": False, "model_config": {"fcnet_hiddens": [64]},
            "catalog_class": Global("ray.rllib.algorithms.ppo.ppo_catalog", "PPOCatalog"),
            "load_state_path": None}
    specs = {f"main_v{i}": New(Global(f"{rllib}.rl_module", "RLModuleSpec"), dict(spec))
             for i in range(n)}
    return {"class": Global(f"{rllib}.multi_rl_module", "MultiRLModule"),
            "ctor_args_and_kwargs": ((), {"observation_space": None, "action_space": None,
                                          "inference_only": False, "learner_only": None,
                                          "model_config": None, "rl_module_specs": specs})}


def test_policies_sharing_one_large_space_object_import():
    # RLlib pickles one space object shared by all policies once; every further reference is a
    # memo hit returning the same object, nothing copied: it must not count the space's bytes
    # again (16 policies sharing a Box((1000,)) were refused at 12.9x the file's size)
    vec = gym.spaces.Box(-10.0, 10.0, (1000,), np.float32)
    blob = dumps(_league(16, vec))  # protocol 5: the arrays' bytes are bytearrays, as RLlib's
    out = decode(blob, RLLIB_GLOBALS)
    specs = out["ctor_args_and_kwargs"][1]["rl_module_specs"]
    assert len(specs) == 16 and len({id(s.observation_space) for s in specs.values()}) == 1
    assert specs["main_v15"].observation_space == vec
    flat = gym.spaces.Box(-1.0, 1.0, (84 * 84 * 3,), np.float32)  # 5 policies, a flat image
    for protocol in (2, 4, 5):  # bytes as latin-1 text, as bytes, as bytearrays
        blob = pickle.dumps({f"p{i}": {"obs": flat, "act": gym.spaces.Discrete(4)} for i in range(5)},
                            protocol=protocol)
        out = decode(blob, RLLIB_GLOBALS)
        assert out["p4"]["obs"] is out["p0"]["obs"] and out["p4"]["obs"] == flat


def test_spaces_copying_one_shared_state_many_times_are_refused():
    # the other side: a space copies its arrays, so 64 Boxes built from one memoised state are
    # 64 copies, each counted
    state = {"_shape": (100_000,), "dtype": np.dtype(np.float32), "_np_random": None,
             "low": np.zeros(100_000, np.float32), "high": np.ones(100_000, np.float32),
             "bounded_below": np.ones(100_000, bool), "bounded_above": np.ones(100_000, bool)}
    boxes = [New(Global("gymnasium.spaces.box", "Box"), state) for _ in range(64)]
    assert isinstance(decode(dumps(boxes[:2]), RLLIB_GLOBALS)[1], gym.spaces.Box)
    with pytest.raises(PickleRefusedError, match="far more than its size"):
        decode(dumps(boxes), RLLIB_GLOBALS)


# -- 5. malformed state: clean errors --------------------------------------------------------------

def _with_state(tmp_path, **changes) -> Path:
    copy = _copy(tmp_path)
    state = OrderedDict((k, v.numpy()) for k, v in load_rllib_checkpoint(copy).get_state().items())
    state.update(changes)
    (copy / "module_state.pkl").write_bytes(dumps(state))
    return copy


def test_big_endian_weights_load_with_their_values(tmp_path):
    key = "pi.net.mlp.0.weight"
    reference = load_rllib_checkpoint(CARTPOLE).get_state()[key]
    module = load_rllib_checkpoint(_with_state(tmp_path, **{key: reference.numpy().astype(">f4")}))
    assert module.get_state()[key].dtype == torch.float32 and torch.equal(module.get_state()[key], reference)


def test_string_weights_are_a_state_mismatch(tmp_path):
    key = "pi.net.mlp.0.weight"
    shape = load_rllib_checkpoint(CARTPOLE).get_state()[key].shape
    with pytest.raises(StateMismatchError, match=f"'{key}': a <U1 array is not a tensor"):
        load_rllib_checkpoint(_with_state(tmp_path, **{key: np.full(tuple(shape), "a", dtype="<U1")}))


@pytest.mark.parametrize("label, payload, message", [
    ("bad type", {b"nd": True, b"type": "not-a-dtype", b"kind": b"", b"shape": [2], b"data": b"\0" * 8},
     "type 'not-a-dtype' is not a numpy dtype"),
    ("no shape", {b"nd": True, b"type": "<f4", b"kind": b"", b"data": b"\0" * 8},
     "shape None is not a list of sizes"),
    ("bad shape", {b"nd": True, b"type": "<f4", b"kind": b"", b"shape": [3], b"data": b"\0" * 8},
     "8 bytes do not fill an array of shape"),
    ("empty scalar", {b"nd": False, b"type": "<f4", b"data": b""}, "a float32 scalar of 0 bytes"),
    ("string dtype", {b"nd": True, b"type": "<U1", b"kind": b"", b"shape": [1], b"data": b"\0" * 4},
     "not a numeric or bool dtype"),
    ("map as key", None, "not a readable msgpack file: unhashable"),
    ("nested deep", b"\x91" * 100_000 + b"\xc0", "not a readable msgpack file: nested too deeply"),  # (an empty reason)
])
def test_malformed_msgpack_state_is_a_format_error(tmp_path, label, payload, message):
    msgpack = pytest.importorskip("msgpack")
    copy = _copy(tmp_path)
    (copy / "module_state.pkl").unlink()
    data = payload if isinstance(payload, bytes) else msgpack.packb({"pi.net.mlp.0.bias": payload}) \
        if payload is not None else bytes.fromhex("81" + "81a161a162" + "01")  # {{"a": "b"}: 1}
    (copy / "module_state.msgpack").write_bytes(data)
    with pytest.raises(CheckpointFormatError, match=message):
        load_rllib_checkpoint(copy)


@pytest.mark.parametrize("module_class, message", [
    (Global("ray.rllib.core.models.catalog", "Catalog"), "module_class is Catalog, not an RLModule class"),
    (5, "module_class is a value of type int, not an RLModule class"),
    (None, "module_class is a value of type NoneType, not an RLModule class"),
    (Global("numpy", "ndarray"), "module_class is a value of type Handler, not an RLModule class"),
])
def test_a_spec_whose_module_class_is_no_rlmodule_is_a_format_error(tmp_path, module_class, message):
    from rlmodule.rllib_checkpoint import _RAY_CATALOG, _RAY_MULTI, _RAY_SPEC, _space

    copy = _copy(tmp_path, FIXTURES / "ray-2.60.0" / "multi")
    spec = New(_RAY_SPEC, {"module_class": module_class,
                           "observation_space": _space(gym.spaces.Box(-1.0, 1.0, (4,), np.float32)),
                           "action_space": _space(gym.spaces.Discrete(2)),
                           "model_config": {"fcnet_hiddens": [8]}, "catalog_class": _RAY_CATALOG,
                           "inference_only": False, "learner_only": False})
    (copy / "class_and_ctor_args.pkl").write_bytes(dumps(
        {"class": _RAY_MULTI, "ctor_args_and_kwargs": ((), {"rl_module_specs": {"p0": spec}})}))
    with pytest.raises(CheckpointFormatError, match=f"sub-module 'p0': {message}"):
        load_rllib_checkpoint(copy)


def test_constructor_arguments_of_the_wrong_type_are_a_format_error(tmp_path):
    from rlmodule.rllib_checkpoint import _RAY_CATALOG, _RAY_PPO

    copy = _copy(tmp_path)
    (copy / "class_and_ctor_args.pkl").write_bytes(dumps({"class": _RAY_PPO, "ctor_args_and_kwargs": ((), {
        "observation_space": 5, "action_space": 3, "model_config": {"fcnet_hiddens": [8]},
        "catalog_class": _RAY_CATALOG})}))
    with pytest.raises(CheckpointFormatError, match="cannot build PPOTorchRLModule from the arguments"):
        load_rllib_checkpoint(copy)


# -- 6. 0-d tensors ---------------------------------------------------------------------------------

class WithScalars(PPOTorchRLModule):
    def setup(self):
        super().setup()
        self.register_buffer("temperature", torch.tensor(0.5))
        self.register_buffer("steps", torch.tensor(7))


def _with_scalars() -> WithScalars:
    return WithScalars(RLModuleConfig(observation_space=gym.spaces.Box(-1, 1, (4,), np.float32),
                                      action_space=gym.spaces.Discrete(2),
                                      model_config_dict={"fcnet_hiddens": [8]}, catalog_class=PPOCatalog))


def test_0d_buffers_take_their_own_state_as_numpy_and_as_python_numbers():
    module = _with_scalars()
    state = {k: v.numpy() for k, v in module.get_state().items()}  # RLlib's state form
    assert state["temperature"].shape == ()
    module.set_state(state)
    module.set_state({"temperature": np.float32(0.25), "steps": np.int64(9)})  # numpy scalars
    assert module.temperature.shape == () and module.temperature.item() == 0.25 and module.steps.item() == 9
    module.set_state({"temperature": 0.125, "steps": 11})  # RLlib's convert_to_numpy: `.item()`
    assert module.temperature.dtype == torch.float32 and module.temperature.item() == 0.125
    assert module.steps.dtype == torch.int64 and module.steps.item() == 11


def test_python_numbers_that_do_not_fit_are_refused():
    module = _with_scalars()
    with pytest.raises(StateMismatchError, match="'steps': the float 0.5 does not fit the module's 0-d"):
        module.set_state({"steps": 0.5})
    with pytest.raises(StateMismatchError, match="'steps': the int 1180591620717411303424 does not fit"):
        module.set_state({"steps": 2 ** 70})
    with pytest.raises(StateMismatchError, match="'temperature': the float 1e\\+300 does not fit"):
        module.set_state({"temperature": 1e300})
    with pytest.raises(StateMismatchError, match="'pi.net.mlp.0.bias': expected a tensor or numpy"):
        module.set_state({"pi.net.mlp.0.bias": 0.5})
    assert module.steps.item() == 7 and module.temperature.item() == 0.5


# -- 4. encoder_latent_dim on export ----------------------------------------------------------------

def test_an_encoder_latent_dim_is_exported_as_the_layers_rllib_builds(tmp_path):
    torch.manual_seed(0)
    module = PPOTorchRLModule(RLModuleConfig(
        observation_space=gym.spaces.Box(-1, 1, (4,), np.float32), action_space=gym.spaces.Discrete(2),
        model_config_dict={"fcnet_hiddens": [8], "encoder_latent_dim": 16}, catalog_class=PPOCatalog))
    save_rllib_checkpoint(module, tmp_path / "out")
    ctor = decode((tmp_path / "out" / "class_and_ctor_args.pkl").read_bytes(), RLLIB_GLOBALS)
    config = ctor["ctor_args_and_kwargs"][1]["model_config"]
    assert config["fcnet_hiddens"] == [8, 16] and "encoder_latent_dim" not in config
    back = load_rllib_checkpoint(tmp_path / "out")
    obs = torch.tensor([[0.1, -0.2, 0.3, 0.4], [0.5, 0.5, -0.5, 0.0]])
    with torch.no_grad():
        assert torch.equal(back.forward_inference({"obs": obs})["action_dist_inputs"],
                           module.forward_inference({"obs": obs})["action_dist_inputs"])
        assert torch.equal(back.compute_values({"obs": obs}), module.compute_values({"obs": obs}))


def test_the_committed_rllib_pickles_are_well_within_the_size_budget():
    from rlmodule import pickle_free

    for path in sorted(FIXTURES.rglob("*.p*")) + sorted(ENVRUNNER.glob("*.pkl")):
        if path.suffix not in (".pkl", ".pt"):
            continue
        data = path.read_bytes()
        machine = pickle_free._Machine(RLLIB_GLOBALS, str(path), math.inf)
        for op, arg, pos in pickletools.genops(data):
            if machine.step(op.name, arg, pos):
                break
        machine.materialise(machine.stack[0], {}, set())
        assert machine.spent <= 1.5 * len(data) + 100, path  # the budget: 4 per byte (+ a floor)


def test_an_exported_0d_tensor_keeps_its_shape(tmp_path):
    """The export writes a 0-d tensor as a 0-d array (np.ascontiguousarray made it shape (1,))."""
    import torch

    from rlmodule import rllib_checkpoint
    from storage.location import Location

    loc = Location(str(tmp_path / "ckpt"))
    state = {"t": torch.tensor(2.5), "w": torch.ones(2, 3).T}
    rllib_checkpoint._write(loc, rllib_checkpoint._Global("m", "C"), {}, state)
    state = rllib_checkpoint._decode_file(loc, "module_state.pkl")
    assert state["t"].shape == () and float(state["t"]) == 2.5
    assert state["w"].shape == (3, 2) and state["w"].flags.c_contiguous
