"""An object's header is the same bytes whether formatted directly or through ``json.dumps``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from storage import safetensors_format as sf
from storage.dtypes import RawTensor

keys = st.one_of(
    st.text("0123456789abcdef", min_size=1, max_size=8).map(lambda h: "blake3:" + h),
    st.text(min_size=1, max_size=6),  # anything: quotes, backslashes, non-ASCII, "__metadata__"
)
shapes = st.lists(st.one_of(st.integers(0, 4), st.booleans()), max_size=3).map(tuple)
dtypes = st.sampled_from(["F32", "BF16", "U8", 'F"32', "é"])
metadata = st.one_of(st.none(), st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3))


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(keys, st.tuples(dtypes, shapes, st.integers(0, 40)), max_size=5), metadata)
def test_the_direct_text_is_json_dumps_byte_for_byte(spec, meta):
    raws = {k: RawTensor(dtype, shape, memoryview(bytes(n))) for k, (dtype, shape, n) in spec.items()}
    raws.pop("__metadata__", None)
    order = sorted(raws)
    plain = sf._plain_header(raws, order, meta)
    if plain is not None:
        assert plain == sf._json_header(raws, order, meta)


def test_digest_keys_take_the_direct_path():
    raws = {"blake3:" + "ab" * 32: RawTensor("F32", (2, 3), memoryview(bytes(24)))}
    assert sf._plain_header(raws, list(raws), {"format": "rlreg.object/1"}) is not None
    assert sf._plain_header({'a"b': raws["blake3:" + "ab" * 32]}, ['a"b'], None) is None
    assert sf._plain_header({"k": RawTensor("F32", (True,), memoryview(bytes(4)))}, ["k"], None) is None


def test_a_tensor_named_like_the_metadata_key_is_refused_where_names_are_header_keys(tmp_path):
    import pytest
    import torch

    from storage import InvalidTensorNameError, Location

    raws = {"__metadata__": RawTensor("F32", (1,), memoryview(bytes(4)))}
    assert sf._plain_header(raws, ["__metadata__"], {"format": "x"}) is None  # (json.dumps's way, then)
    loc = Location(str(tmp_path))
    with pytest.raises(InvalidTensorNameError, match="__metadata__"):
        loc.save_tensors("state.safetensors", {"__metadata__": torch.zeros(1)})
    assert not list(tmp_path.iterdir())  # nothing written
