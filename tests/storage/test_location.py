"""Location on every backend: files, JSON, safetensors, errors."""

from __future__ import annotations

import numpy as np
import pytest
import safetensors.torch
import torch

from storage import Location, ObjectNotFoundError, UnknownProtocolError, UnsupportedDtypeError


def test_bytes_and_json_round_trip(store_url):
    loc = Location(store_url)
    loc.makedirs()
    loc.write_bytes("a.bin", b"\x00\x01")
    loc.write_json("m.json", {"b": 1, "a": "é"})
    assert loc.read_bytes("a.bin") == b"\x00\x01"
    assert loc.read_bytes("m.json") == '{\n  "a": "é",\n  "b": 1\n}\n'.encode()
    assert loc.read_json("m.json") == {"a": "é", "b": 1}
    assert loc.listdir() == ["a.bin", "m.json"]
    assert loc.exists("a.bin") and not loc.exists("zz")


def test_child_and_listdir(store_url):
    loc = Location(store_url)
    loc.child("p0").write_bytes("x", b"1")
    loc.write_bytes("y", b"2")
    assert loc.listdir() == ["p0", "y"]
    assert loc.child("p0").isdir()
    assert loc.child("p0").url == loc.url + "/p0"


def test_tensors_round_trip_exactly(store_url):
    loc = Location(store_url)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {
        "w": base.t(),
        "shared": base[1],
        "bf": torch.randn(5).to(torch.bfloat16),
        "scalar": torch.tensor(7, dtype=torch.int64),
        "empty": torch.zeros(0, 3),
        "mask": torch.tensor([True, False]),
        "np": np.arange(6, dtype=">u2").reshape(2, 3),
    }
    loc.save_tensors("s.safetensors", tensors, metadata={"k": "v"})
    out = loc.load_tensors("s.safetensors")
    assert set(out) == set(tensors)
    for k, v in tensors.items():
        v = torch.from_numpy(v.astype("<u2")) if isinstance(v, np.ndarray) else v
        assert out[k].dtype == v.dtype and out[k].shape == v.shape and torch.equal(out[k], v), k
    assert loc.load_metadata("s.safetensors") == {"k": "v"}


def test_files_are_plain_safetensors(tmp_path):
    loc = Location(tmp_path)
    loc.save_tensors("s.safetensors", {"a": torch.ones(3, dtype=torch.float16), "b": torch.arange(4)})
    out = safetensors.torch.load_file(str(tmp_path / "s.safetensors"))
    assert torch.equal(out["a"], torch.ones(3, dtype=torch.float16)) and torch.equal(out["b"], torch.arange(4))


def test_missing_file_names_the_url(store_url):
    loc = Location(store_url)
    with pytest.raises(ObjectNotFoundError, match=r"^not found: .*/nope\.json$") as info:
        loc.read_json("nope.json")
    assert isinstance(info.value, FileNotFoundError)


def test_unknown_protocol():
    with pytest.raises(UnknownProtocolError, match=r"^unknown storage protocol 'nosuch' in 'nosuch://x/y'"):
        Location("nosuch://x/y")


def test_unsupported_dtype_changes_nothing(tmp_path):
    loc = Location(tmp_path)
    loc.save_tensors("s.safetensors", {"a": torch.ones(2)})
    with pytest.raises(UnsupportedDtypeError, match=r"^tensor 'c': dtype torch.complex64 is not supported$"):
        loc.save_tensors("s.safetensors", {"a": torch.zeros(2), "c": torch.zeros(2, dtype=torch.complex64)})
    assert torch.equal(loc.load_tensors("s.safetensors")["a"], torch.ones(2))


def test_plain_path_and_file_url_agree(tmp_path):
    assert Location(tmp_path).url == Location(f"file://{tmp_path}").url == f"file://{tmp_path}"


def test_bad_file_name_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"^file name '\.\./x' must be a relative path"):
        Location(tmp_path).write_bytes("../x", b"")


def test_known_protocol_without_its_backend_gives_the_install_hint():
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed here")
    with pytest.raises(UnknownProtocolError) as info:
        Location("gcs://bucket/x")
    assert str(info.value) == (
        "storage protocol 'gcs' in 'gcs://bucket/x' is not available: Please install gcsfs to access Google Storage"
    )


def test_write_is_atomic_on_failure(tmp_path):
    loc = Location(tmp_path)
    loc.write_bytes("f.bin", b"old")

    def chunks():
        yield b"new-partial"
        raise OSError("disk on fire")

    from storage.filesystems import atomic_write

    with pytest.raises(OSError, match="disk on fire"):
        atomic_write(loc.fs, loc.path + "/f.bin", chunks())
    assert loc.read_bytes("f.bin") == b"old"
    assert loc.listdir() == ["f.bin"]  # no temporary file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_misaligned_foreign_file_is_read_exactly(tmp_path):
    from storage.filesystems import atomic_write
    from storage.safetensors_format import chunks, header_bytes
    from storage.tensors import to_raw

    raws = {"i8": to_raw("i8", torch.tensor([1, 2, 3], dtype=torch.int8)), "f": to_raw("f", torch.tensor([1.5, -2.0]))}
    order = ["i8", "f"]  # the float32 data starts 3 bytes in: not aligned
    loc = Location(tmp_path)
    atomic_write(loc.fs, loc.path + "/m.safetensors", chunks(raws, order, header_bytes(raws, order)))
    out = loc.load_tensors("m.safetensors")
    assert torch.equal(out["f"], torch.tensor([1.5, -2.0])) and torch.equal(out["i8"], torch.tensor([1, 2, 3], dtype=torch.int8))
    assert safetensors.torch.load_file(str(tmp_path / "m.safetensors"))["f"].tolist() == [1.5, -2.0]
