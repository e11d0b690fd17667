"""Property: whatever dtype and shape, ``get(put(x))`` gives back x exactly, on every backend."""

from __future__ import annotations

import numpy as np
import torch
from storage_helpers import same
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

NUMPY_DTYPES = [
    np.float16, np.float32, np.float64, np.bool_,
    np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
]
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)


@st.composite
def tensors(draw):
    """A torch tensor (bf16 too) or numpy array, possibly a non-contiguous view."""
    dtype = draw(st.sampled_from(NUMPY_DTYPES + ["bfloat16"]))
    shape = draw(shapes)
    if dtype == "bfloat16":
        a = draw(hnp.arrays(np.float32, shape))
        value = torch.from_numpy(a).to(torch.bfloat16)
    else:
        value = draw(hnp.arrays(dtype, shape))
        if draw(st.booleans()):
            value = torch.from_numpy(value)
    if draw(st.booleans()) and value.ndim >= 2:
        value = value.transpose(0, 1) if isinstance(value, torch.Tensor) else value.T
    return value


def as_torch(v) -> torch.Tensor:
    return v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v).reshape(v.shape))


names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)


def test_round_trip(store, store_url):
    examples = 25 if store_url.startswith("s3://") else 60

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(names, tensors(), min_size=1, max_size=5))
    def check(state):
        out = store.get(store.put(state))
        assert set(out) == set(state)
        for k, v in state.items():
            assert same(out[k], as_torch(v)), k

    check()
