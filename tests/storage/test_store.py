"""The Store contract on every backend: exact round trips, manifests, dedup, packing, housekeeping."""

from __future__ import annotations

import json

import blake3
import numpy as np
import pytest
import torch
from storage_helpers import same, stored_bytes

from storage import Store, manifest_objects

DTYPES = [
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.bool,
    torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
]


def sample(dtype: torch.dtype, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g).to(dtype)
    info = torch.iinfo(dtype)
    return torch.randint(max(info.min, -1000), min(info.max, 1000), shape, generator=g).to(dtype)


def test_every_dtype_round_trips_exactly(store):
    tensors = {f"{d}".removeprefix("torch."): sample(d, (3, 5), i) for i, d in enumerate(DTYPES)}
    tensors |= {f"scalar_{k}": v[0, 0].clone() for k, v in tensors.items()}
    tensors["empty"] = torch.zeros(0, 4, dtype=torch.int32)
    m = store.put(tensors)
    out = store.get(m)
    assert set(out) == set(tensors)
    for k, v in tensors.items():
        assert same(out[k], v), k
    assert m["tensors"]["bfloat16"]["dtype"] == "bfloat16" and m["tensors"]["scalar_int8"]["shape"] == []


def test_non_contiguous_and_shared_storage(store):
    base = torch.arange(2000, dtype=torch.float32).reshape(40, 50)
    tensors = {"t": base.t(), "row": base[3], "col": base[:, 7], "step": base[::3, ::2], "base": base, "alias": base}
    out = store.get(store.put(tensors))
    for k, v in tensors.items():
        assert same(out[k], v), k
    out["base"][0, 0] = -1.0  # returned tensors are independent of each other and of the input
    assert out["alias"][0, 0] == 0.0 and base[0, 0] == 0.0  # equal bytes, yet not aliased


def test_numpy_arrays(store):
    arrays = {
        "f": np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
        "big_endian": np.arange(6, dtype=">i4"),
        "strided": np.arange(20, dtype=np.float64)[::3],
        "b": np.array([True, False, True]),
        "u64": np.array([2**63 + 5], dtype=np.uint64),
        "scalar": np.float16(2.5),
    }
    out = store.get(store.put(arrays))
    for k, a in arrays.items():
        a = np.asarray(a)
        expect = torch.from_numpy(a.astype(a.dtype.newbyteorder("<"), order="C"))
        assert same(out[k], expect), k


def test_names_subset_reads_only_their_objects(store):
    m = store.put({"big": torch.ones(100_000), "small": torch.zeros(3)})
    before = store.stats.objects_read + store.stats.cache_hits
    out = store.get(m, names=["small"])
    assert list(out) == ["small"] and same(out["small"], torch.zeros(3))
    assert store.stats.objects_read + store.stats.cache_hits - before == 1


GOLDEN = (
    "{\"format\":\"rlreg.manifest/1\",\"objects\":{\"blake3:2f45539a9bfe34366573169a4aebd3ef89d12cb57ec849b8d2387101b918f0"
    "39\":{\"nbytes\":540}},\"tensors\":{\"b\":{\"digest\":\"blake3:b1a79d6bc5371165fc16fc6f6189d6043e9d5c23c9ad5ccc80998a8cc"
    "5728d31\",\"dtype\":\"bfloat16\",\"nbytes\":2,\"object\":\"blake3:2f45539a9bfe34366573169a4aebd3ef89d12cb57ec849b8d23871"
    "01b918f039\",\"shape\":[]},\"mask\":{\"digest\":\"blake3:4ce0a8b027fbacd5c19be53522decbf46e79bbdf1bfa82c63a2d440e385fe"
    "edf\",\"dtype\":\"bool\",\"nbytes\":2,\"object\":\"blake3:2f45539a9bfe34366573169a4aebd3ef89d12cb57ec849b8d2387101b918f0"
    "39\",\"shape\":[2]},\"w\":{\"digest\":\"blake3:e2037d1989d9a8cf33c9c59646aa80ada602860bf36d311add226ce4cee8a642\",\"dtyp"
    "e\":\"float32\",\"nbytes\":24,\"object\":\"blake3:2f45539a9bfe34366573169a4aebd3ef89d12cb57ec849b8d2387101b918f039\",\"s"
    "hape\":[2,3]}}}"
)


def test_manifest_golden_bytes(store):
    m = store.put(
        {
            "w": torch.arange(6, dtype=torch.float32).reshape(2, 3),
            "b": torch.tensor(1.5, dtype=torch.bfloat16),
            "mask": torch.tensor([True, False]),
        }
    )
    assert json.dumps(m, sort_keys=True, separators=(",", ":")) == GOLDEN
    assert json.loads(GOLDEN) == m
    # the tensor's address is blake3 over its dtype, shape and little-endian bytes
    data = torch.arange(6, dtype=torch.float32).numpy().tobytes()
    assert m["tensors"]["w"]["digest"] == "blake3:" + blake3.blake3(b"rlreg.tensor/1\0F32\0[2,3]\0" + data).hexdigest()
    assert manifest_objects(m) == {"blake3:2f45539a9bfe34366573169a4aebd3ef89d12cb57ec849b8d2387101b918f039"}


def module_state(n_biases: int = 300, seed: int = 0) -> dict[str, torch.Tensor]:
    """About 4 MB: fifteen 256x256 weights and hundreds of 1 KB biases."""
    g = torch.Generator().manual_seed(seed)
    state = {f"layer{i}.weight": torch.randn(256, 256, generator=g) for i in range(15)}
    state |= {f"layer{i}.bias": torch.randn(256, generator=g) for i in range(n_biases)}
    return state


def test_small_tensors_are_packed(store):
    state = module_state()
    m = store.put(state)
    assert len(state) == 315
    assert len(manifest_objects(m)) == 16  # 15 weights alone, 300 biases in one pack
    assert len(store.list_digests()) == 16


def test_dedup_second_snapshot_writes_kilobytes(store):
    state = module_state()
    store.put(state)
    first = stored_bytes(store)
    assert 4_000_000 < first < 4_300_000
    store.put({k: v.clone() for k, v in state.items()})  # same bytes, other tensors
    assert stored_bytes(store) == first
    state["layer7.bias"][:4] += 1  # 16 bytes of a bias
    store.put(state)
    changed_bias = stored_bytes(store) - first
    assert 300_000 < changed_bias < 360_000  # one pack of 300 biases (and its header), not 4 MB
    state["layer3.weight"][0, :4] += 1  # 16 bytes of a weight
    store.put(state)
    assert stored_bytes(store) - first - changed_bias < 270_000  # that one 256 KB weight


def test_dedup_across_names_and_within_a_put(store):
    w = torch.randn(300, 300)
    m1 = store.put({"policy.w": w, "copy": w.clone()})
    written = stored_bytes(store)
    m2 = store.put({"other_model.layer": w.clone()})
    assert stored_bytes(store) == written and written < w.numel() * 4 + 1000
    assert m2["tensors"]["other_model.layer"]["object"] == m1["tensors"]["policy.w"]["object"]
    assert store.stats.bytes_written == written


def test_housekeeping(store):
    m = store.put({"a": torch.randn(100_000), "b": torch.randn(4)})
    objs = sorted(manifest_objects(m))
    assert store.list_digests() == objs
    unknown = "blake3:" + "0" * 64
    assert store.exists(objs + [unknown]) == set(objs)
    assert store.verify().to_dict() == {"checked": 2, "damaged": {}, "damaged_tensors": {}, "quarantined": {}, "cache_damaged": {}, "cache_discarded": [], "ok": True}
    assert store.delete([objs[0], unknown]) == {objs[0]}
    assert store.list_digests() == objs[1:]
    assert store.exists(objs) == {objs[1]}


def test_packs_are_stable_when_a_tensor_is_added(store):
    g = torch.Generator().manual_seed(1)
    state = {f"t{i:04d}": torch.randn(1250, generator=g) for i in range(2000)}  # 10 MB, 5 KB each
    m1 = store.put(state)
    assert len(manifest_objects(m1)) <= 20
    state["t0999a"] = torch.randn(1250, generator=g)
    m2 = store.put(state)
    assert len(manifest_objects(m2) - manifest_objects(m1)) <= 2


def test_objects_are_plain_safetensors_files(tmp_path):
    import safetensors.torch

    store = Store(tmp_path)
    m = store.put({"w": torch.arange(5.0)})
    (obj,) = manifest_objects(m)
    h = obj.removeprefix("blake3:")
    loaded = safetensors.torch.load_file(str(tmp_path / "objects" / h[:2] / h))
    assert same(loaded[m["tensors"]["w"]["digest"]], torch.arange(5.0))


def test_get_aligned_gives_tensors_on_64_byte_boundaries(store):
    """``aligned=True``: a tensor that does not start on a 64-byte boundary in its object is a copy (as
    torch would allocate it), the others stay views; by default every tensor is a view."""
    state = {f"b{i}": torch.randn(13) for i in range(20)} | {"w": torch.randn(40_000)}  # 20 packed, one alone
    m = store.put(state)
    views = store.get(m)
    assert any(t.data_ptr() % 64 for t in views.values())  # packed tensors lie where the pack puts them
    got = store.get(m, aligned=True)
    assert all(t.data_ptr() % 64 == 0 for t in got.values())
    if store.is_local:  # a view of the object's map: its data starts aligned
        assert got["w"].untyped_storage().nbytes() > got["w"].nbytes
    assert all(same(got[k], v) for k, v in state.items())


@pytest.mark.parametrize("requires_grad", [True, False])
def test_a_tensor_read_keeps_its_memory_when_the_caller_swaps_it(requires_grad):
    """A put reads tensors by address while writer threads store them: the record keeps the memory
    alive even if the caller's tensor is given other memory meanwhile (``p.data = ...``)."""
    from storage.tensors import to_raw

    p = torch.nn.Parameter(torch.full((1 << 16,), 1.0), requires_grad=requires_grad)
    raw = to_raw("p", p)
    p.data = torch.zeros(1 << 16)
    churn = [torch.full((1 << 16,), 7.0) for _ in range(64)]  # allocations that would reuse freed memory
    assert np.frombuffer(raw.data, dtype=np.float32).tolist() == [1.0] * (1 << 16)
    del churn
