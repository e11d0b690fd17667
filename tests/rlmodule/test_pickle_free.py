"""rlmodule.pickle_free: RLlib's pickles decoded into plain data, hostile ones refused unrun."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlmodule import PickleRefusedError
from rlmodule.pickle_free import COLLECTIONS_GLOBALS, NUMPY_GLOBALS, decode
from rlmodule.rllib_globals import RLLIB_GLOBALS

HERE = Path(__file__).parent
PLAIN = {**NUMPY_GLOBALS, **COLLECTIONS_GLOBALS}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict:
    """The hostile pickles decoded under an audit hook in a fresh process, then the control."""
    folder = tmp_path_factory.mktemp("hostile")
    proc = subprocess.run(
        [sys.executable, str(HERE / "hostile_pickles.py"), str(folder / "canary"), str(folder / "control")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    return {**json.loads(proc.stdout), "folder": folder}


def test_hostile_pickles_are_refused_without_running_anything(hostile):
    report = hostile["report"]
    assert len(report) == 18
    for name, (refused, message, events) in report.items():
        assert refused, f"{name} was decoded"
        assert events == [], f"{name}: audit events {events}"
        assert "refused without running anything" in message
    assert hostile["canary_after_decode"] is False and not (hostile["folder"] / "canary").exists()
    assert "global 'os.system' is not on the allow-list" in report["os.system (protocol 0 GLOBAL)"][1]
    assert "global 'builtins.eval'" in report["builtins.eval"][1]
    assert "numpy.testing._private.utils.runstring" in report["numpy runstring"][1]
    assert "opcode INST at byte" in report["INST opcode"][1]
    assert "opcode OBJ at byte" in report["OBJ opcode"][1]
    assert "opcode EXT1" in report["EXT1 opcode"][1] and "opcode BINPERSID" in report["persistent id"][1]
    assert "REDUCE on a numpy.dtype object" in report["nested reduce on a dtype"][1]
    assert "dtype 'O8' is not a numeric, bool or fixed-width string dtype" in report["object-dtype array"][1]
    assert "pickled by value" in report["cloudpickle by value"][1]
    assert "notebook or __main__" in report["cloudpickle by value"][1]
    assert "was defined in __main__" in report["__main__ class"][1]


def test_the_control_unpickling_the_same_file_runs_it_and_is_seen(hostile):
    assert (hostile["folder"] / "control").exists()              # pickle.loads ran os.system
    assert "os.system" in hostile["control"] and "pickle.find_class" in hostile["control"]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_arrays_scalars_and_dtypes_are_rebuilt_at_every_protocol(protocol):
    data = OrderedDict(
        w=np.arange(12, dtype=np.float32).reshape(3, 4), f=np.asfortranarray(np.ones((2, 3))),
        b=np.array([True, False]), i=np.int64(7), c=np.complex64(1 + 2j), empty=np.zeros((0, 2)),
        big=np.array([1, 2], dtype=">i4"), t=(1, 2.5, "s", b"x", None), l=[{"k": [1]}],
        s={1, 2}, fs=frozenset({"a"}))
    out = decode(pickle.dumps(data, protocol=protocol), PLAIN)
    assert type(out) is OrderedDict and list(out) == list(data)
    for key in ("w", "f", "b", "empty", "big"):
        assert out[key].dtype == data[key].dtype and np.array_equal(out[key], data[key])
    assert out["f"].flags.f_contiguous and out["w"].flags.writeable
    assert out["i"] == 7 and type(out["i"]) is np.int64 and out["c"] == np.complex64(1 + 2j)
    assert out["t"] == data["t"] and out["l"] == data["l"] and out["s"] == {1, 2}
    assert out["fs"] == frozenset({"a"})


def test_numpy_1_names_are_rebuilt_too():
    blob = pickle.dumps(np.arange(3, dtype=np.int16), protocol=2).replace(b"numpy._core", b"numpy.core")
    assert b"numpy.core.multiarray" in blob
    assert decode(blob, PLAIN).tolist() == [0, 1, 2]


def test_gymnasium_spaces_are_rebuilt_from_their_state():
    spaces = [gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(4, start=1),
              gym.spaces.MultiDiscrete([2, 3]), gym.spaces.MultiBinary(3),
              gym.spaces.Tuple([gym.spaces.Discrete(2)]), gym.spaces.Dict({"a": gym.spaces.Discrete(2)}),
              gym.spaces.Text(4, charset="ab")]
    out = decode(pickle.dumps(spaces, protocol=5), RLLIB_GLOBALS)
    assert out == spaces and [type(s) for s in out] == [type(s) for s in spaces]


class UsersBox(gym.spaces.Box):
    """A subclass is not its base: refused."""


def test_unknown_classes_and_malformed_pickles_are_refused():
    with pytest.raises(PickleRefusedError, match=r"global '\w+\.UsersBox' is not on the allow-list"):
        decode(pickle.dumps(UsersBox(0, 1, (1,))), RLLIB_GLOBALS)
    with pytest.raises(PickleRefusedError, match="not a readable pickle|no STOP"):
        decode(b"\x80\x05K\x01", PLAIN)
    with pytest.raises(PickleRefusedError, match="self-referencing"):
        loop: list = []
        loop.append(loop)
        decode(pickle.dumps(loop), PLAIN)
