"""A Simplex in an RLlib pickle: its size (`_shape`) is charged to the decoder's budget and checked
against the limits before our Simplex builds its default concentration (a list and an array of
`_shape[-1]` ints): a 390-byte pickle made the decoder allocate gigabytes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from rlmodule import PickleRefusedError
from rlmodule.pickle_free import decode
from rlmodule.rllib_globals import RLLIB_GLOBALS
from rlmodule.spaces import Simplex


def _g(mod: str, name: str) -> bytes:
    return f"c{mod}\n{name}\n".encode()


def _s(text: str) -> bytes:
    return b"V" + text.encode() + b"\n"


def _tiny_simplex(n: int) -> bytes:
    """NEWOBJ Simplex + BUILD {_shape: (n,), dtype, dim: n, concentration: 1.0 (a scalar)}: ~390 bytes."""
    f32 = _g("numpy", "dtype") + b"(" + _s("f4") + b"tR"
    one = _g("numpy.core.multiarray", "scalar") + b"(" + f32 + b"C\x04\x00\x00\x80?tR"
    return (_g("ray.rllib.utils.spaces.simplex", "Simplex") + b")\x81(d" + _s("_shape") + b"(I"
            + str(n).encode() + b"\nts" + _s("dtype") + f32 + b"s" + _s("dim") + b"I" + str(n).encode()
            + b"\ns" + _s("concentration") + one + b"sb.")


@pytest.mark.parametrize("n", [10**6, 10**8])
def test_a_tiny_pickle_of_a_huge_simplex_is_refused_before_it_is_built(n, monkeypatch):
    built = []
    monkeypatch.setattr(Simplex, "__init__", lambda self, *a, **k: built.append(a))
    data = _tiny_simplex(n)
    assert len(data) < 400
    with pytest.raises(PickleRefusedError, match="Simplex|far more than its size"):
        decode(data, RLLIB_GLOBALS, what="ctor")
    assert built == []


class Simplex_:  # pickles as RLlib's Simplex does: NEWOBJ + BUILD of its __dict__
    pass


def test_a_simplex_as_rllib_pickles_it_still_decodes():
    space = Simplex_()
    space.__dict__.update(_shape=(2, 5), dtype=np.dtype("float32"), _np_random=None, dim=5,
                          concentration=np.array([1] * 5))
    ours = f"c{__name__}\nSimplex_\n".encode()
    data = pickle.dumps(space, protocol=2)  # (GLOBAL: the class's name is a line of text)
    assert ours in data
    data = data.replace(ours, b"cray.rllib.utils.spaces.simplex\nSimplex\n")
    out = decode(data, RLLIB_GLOBALS)
    assert type(out) is Simplex and out.shape == (2, 5) and out.concentration.tolist() == [1] * 5
