"""Fuzz: the safetensors header reader and the checkpoint JSON readers take any bytes or JSON and either
read them or raise the one error of their kind (never a RecursionError, OverflowError, MemoryError,
KeyError, AttributeError, ...). A bounded number of examples runs in CI; ``RLREG_FUZZ_EXAMPLES``
raises it for a longer soak (``RLREG_FUZZ_EXAMPLES=5000 pytest tests/rlmodule/test_reader_fuzz.py``).
"""

from __future__ import annotations

import json
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlmodule import RLModule, RLModuleError
from rlmodule.checkpoints import decode_value, read_json_object, read_metadata
from rlmodule.serialization import gym_space_from_dict
from storage import IntegrityError, Location
from storage.objects import decode, held_tensors
from storage.safetensors_format import FormatError, parse_header

EXAMPLES = int(os.environ.get("RLREG_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FUZZ_BUILDS = settings(FUZZ, max_examples=max(EXAMPLES // 3, 1))  # each example builds a module

# Numbers a hostile file would use: huge, negative, past 2^63, floats where ints belong.
NUMBERS = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 2**63, 10**30, 2**64 - 1]),
                    st.floats(allow_nan=False, allow_infinity=False))
KEYS = st.sampled_from(["space", "n", "start", "shape", "low", "high", "dtype", "nvec", "spaces", "keys",
                        "max_length", "min_length", "charset", "feature_space", "$tuple", "$space",
                        "$type", "$object", "value", "data_offsets", "__metadata__", "format"]) | st.text(max_size=6)
SPACE_NAMES = st.sampled_from(["box", "discrete", "multi-binary", "multi-discrete", "tuple", "dict", "text",
                               "sequence", "graph", "oneof"])
LEAVES = st.none() | st.booleans() | NUMBERS | st.text(max_size=12) | SPACE_NAMES | st.sampled_from(
    ["<f4", "<i8", "F32", "eJyb7BfqGxDJyFDGUK2eklqcXKRupaBu", "rlmodule.rl_module.RLModuleConfig"])
JSON = st.recursive(LEAVES, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=5),
                    max_leaves=30)
DEEP = st.integers(90, 3000).map(lambda n: "[" * n + "]" * n)


def _header_bytes(text: bytes, length: int | None = None) -> bytes:
    return struct.pack("<Q", len(text) if length is None else length) + text


@FUZZ
@given(st.binary(max_size=300) | JSON.map(lambda v: _header_bytes(json.dumps(v).encode()))
       | DEEP.map(lambda t: _header_bytes(t.encode())) | st.integers(0, 2**64 - 1).map(lambda n: _header_bytes(b"{}", n)))
def test_safetensors_header_reader_raises_only_format_error(data):
    try:
        entries, metadata, start = parse_header(data, "fuzz")
    except FormatError:
        return
    assert isinstance(entries, dict) and isinstance(metadata, dict) and 8 <= start <= len(data)


@FUZZ
@given(st.binary(max_size=300) | JSON.map(lambda v: _header_bytes(json.dumps(v).encode())))
def test_object_decoder_raises_only_integrity_error(data):
    from storage.digest import bytes_digest

    obj = bytes_digest(data[: 8 + struct.unpack_from("<Q", data)[0]] if len(data) >= 8 else data)
    try:
        decode(bytearray(data), obj, "fuzz", lambda _: [])
    except IntegrityError:
        pass
    assert isinstance(held_tensors(data, obj), list)


@FUZZ
@given(JSON)
def test_space_dict_reader_raises_only_space_serialization_errors(value):
    try:
        gym_space_from_dict(value if isinstance(value, dict) or value is None else {"space": "box", "shape": value})
    except RLModuleError:
        pass


@FUZZ
@given(JSON)
def test_constructor_argument_reader_raises_only_rlmodule_errors(value):
    try:
        decode_value(value)
    except RLModuleError:
        pass


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    import gymnasium as gym

    from rlmodule import RLModuleSpec
    from rlmodule.ppo import PPOCatalog, PPOTorchRLModule

    spec = RLModuleSpec(module_class=PPOTorchRLModule, observation_space=gym.spaces.Box(-1, 1, (3,)),
                        action_space=gym.spaces.Discrete(2), model_config_dict={"hidden": [4]},
                        catalog_class=PPOCatalog)
    return spec.build().save_to_path(str(tmp_path_factory.mktemp("fuzz") / "good"))


FILES = st.sampled_from(["metadata.json", "class_and_ctor_args.json", "module_state.json"])


@FUZZ_BUILDS
@given(name=FILES, content=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode())
       | DEEP.map(str.encode))
def test_checkpoint_json_readers_raise_only_rlmodule_errors(good_checkpoint, tmp_path_factory, name, content):
    import shutil

    folder = tmp_path_factory.mktemp("case") / "ckpt"
    shutil.copytree(good_checkpoint.removeprefix("file://"), folder)
    (folder / name).write_bytes(content)
    loc = Location(str(folder))
    try:
        read_json_object(loc, name)
        read_metadata(loc)
        RLModule.from_checkpoint(str(folder))
    except RLModuleError:
        pass


@FUZZ_BUILDS
@given(ctor=JSON)
def test_from_checkpoint_with_fuzzed_constructor_raises_only_rlmodule_errors(good_checkpoint, tmp_path_factory, ctor):
    import shutil

    folder = tmp_path_factory.mktemp("ctor") / "ckpt"
    shutil.copytree(good_checkpoint.removeprefix("file://"), folder)
    original = json.loads((folder / "class_and_ctor_args.json").read_text())
    config = original["ctor_args"][0]["value"]
    if isinstance(ctor, dict):
        config.update(ctor)  # keys of the real config, fuzzed values
    else:
        config["observation_space"] = ctor
    (folder / "class_and_ctor_args.json").write_text(json.dumps(original))
    try:
        RLModule.from_checkpoint(str(folder))
    except RLModuleError:
        pass
