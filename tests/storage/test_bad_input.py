"""Bad input and faults: a clear error naming the thing, and nothing already stored changed."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from storage_helpers import stored_bytes

import storage
from storage import (
    InvalidDigestError,
    InvalidManifestError,
    InvalidTensorNameError,
    Store,
    StorageUnavailableError,
    TensorNotInManifestError,
    UnknownProtocolError,
    UnsupportedDtypeError,
)


@pytest.fixture
def filled(store):
    """A store holding one snapshot, and a snapshot of what it holds."""
    m = store.put({"w": torch.randn(100_000), "b": torch.randn(5)})
    return store, m, store.list_digests(), stored_bytes(store)


def unchanged(filled) -> bool:
    store, _, digests, size = filled
    return store.list_digests() == digests and stored_bytes(store) == size


@pytest.mark.parametrize(
    ("tensors", "error", "message"),
    [
        ({1: torch.ones(1)}, InvalidTensorNameError, "tensor name 1 is a int, not a str"),
        ({("a",): torch.ones(1)}, InvalidTensorNameError, "tensor name ('a',) is a tuple, not a str"),
        ({"": torch.ones(1)}, InvalidTensorNameError, "tensor name '' is empty"),
        ({"c": torch.zeros(2, dtype=torch.complex64)}, UnsupportedDtypeError,
         "tensor 'c': dtype torch.complex64 is not supported"),
        ({"s": torch.eye(3).to_sparse()}, UnsupportedDtypeError,
         "tensor 's': layout torch.sparse_coo is not supported (only strided)"),
        ({"o": np.array(["x"], dtype=object)}, UnsupportedDtypeError, "tensor 'o': numpy dtype object is not supported"),
        ({"l": [1.0, 2.0]}, UnsupportedDtypeError,
         "tensor 'l': a builtins.list is not a torch.Tensor or numpy.ndarray"),
    ],
)
def test_bad_tensors_store_nothing(filled, tensors, error, message):
    store = filled[0]
    with pytest.raises(error) as info:
        store.put({"new": torch.randn(70_000)} | tensors)  # a valid tensor first: not written either
    assert str(info.value) == message
    assert unchanged(filled)


def test_put_takes_a_mapping(store):
    with pytest.raises(TypeError, match=r"^put\(\) takes a dict of name -> tensor, not a list$"):
        store.put([torch.ones(1)])


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda m: [1], InvalidManifestError, "a manifest is a dict, not a list"),
        (lambda m: m | {"format": "x/9"}, InvalidManifestError, "manifest format 'x/9' is not 'rlreg.manifest/1'"),
        (lambda m: {"format": "rlreg.manifest/1"}, InvalidManifestError, "manifest has no 'tensors' dict"),
        (lambda m: m | {"tensors": {"w": {"dtype": "float32"}}}, InvalidManifestError,
         "manifest entry 'w' lacks one of digest, dtype, nbytes, object, shape"),
        (lambda m: m | {"tensors": {"w": m["tensors"]["w"] | {"dtype": "complex32"}}}, InvalidManifestError,
         "manifest entry 'w' has unknown dtype 'complex32'"),
        (lambda m: m | {"tensors": {"w": m["tensors"]["w"] | {"digest": "md5:0"}}}, InvalidManifestError,
         "manifest entry 'w' has a malformed digest"),
        (lambda m: m | {"tensors": {"w": m["tensors"]["w"] | {"shape": [-1]}}}, InvalidManifestError,
         "manifest entry 'w' has a malformed shape [-1]"),
    ],
)
def test_bad_manifests(filled, mutate, error, message):
    store, m = filled[0], filled[1]
    with pytest.raises(error) as info:
        store.get(mutate(m))
    assert str(info.value) == message
    assert unchanged(filled)


def test_manifest_that_lies_about_a_tensor(filled):
    store, m = filled[0], filled[1]
    lie = m | {"tensors": {"w": m["tensors"]["w"] | {"shape": [50_000, 2]}}}
    with pytest.raises(InvalidManifestError, match=r"^manifest entry 'w' does not match object blake3:"):
        store.get(lie)


def test_unknown_name(filled):
    store, m = filled[0], filled[1]
    with pytest.raises(TensorNotInManifestError, match=r"^tensor 'nope' is not in the manifest$"):
        store.get(m, names=["w", "nope"])
    with pytest.raises(InvalidTensorNameError, match=r"^tensor name 3 is a int, not a str$"):
        store.get(m, names=[3])


def test_bad_digests(filled):
    store = filled[0]
    with pytest.raises(InvalidDigestError, match=r"^'abc' is not a digest \(expected 'blake3:' and 64 hex digits\)$"):
        store.exists(["abc"])
    with pytest.raises(InvalidDigestError, match=r"^expected an iterable of digests, got the single string"):
        store.delete(filled[2][0])
    assert unchanged(filled)


def test_unknown_protocol(tmp_path):
    with pytest.raises(UnknownProtocolError, match=r"^unknown storage protocol 'nosuch' in 'nosuch://b/x' \(fsspec knows: "):
        Store("nosuch://b/x")


def test_missing_bucket(s3_server):
    with pytest.raises(StorageUnavailableError) as info:
        Store("s3://no-such-bucket-rlreg/x").put({"w": torch.ones(3)})
    assert str(info.value) == "storage 's3://no-such-bucket-rlreg/x' is unavailable: The specified bucket does not exist"
    assert isinstance(info.value, ConnectionError)


def test_unreachable_endpoint(s3_bucket):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    store = Store(
        s3_bucket + "/x",
        endpoint_url=f"http://127.0.0.1:{port}",
        config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 1},
    )
    with pytest.raises(StorageUnavailableError, match=rf"^storage '{s3_bucket}/x' is unavailable: EndpointConnectionError"):
        store.put({"w": torch.ones(3)})


def test_missing_credentials(s3_bucket, monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(StorageUnavailableError) as info:
        Store(s3_bucket + "/x", skip_instance_cache=True).put({"w": torch.ones(3)})
    assert str(info.value) == (
        f"storage '{s3_bucket}/x' is unavailable: no AWS credentials found "
        "(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    )


def test_exported_members():
    exported = set(storage.__all__)
    public = {name for name in dir(storage) if not name.startswith("_")}
    modules = {"cache", "digest", "errors", "filesystems", "jsondepth", "location", "manifest", "objects", "packing",
               "progress", "safetensors_format", "store", "tensors"}
    assert exported == public - modules
    assert {"Store", "Location", "manifest_objects", "StorageError", "IntegrityError", "ObjectNotFoundError",
            "UnsupportedDtypeError", "UnknownProtocolError", "StorageUnavailableError"} <= exported


def test_error_tree():
    assert issubclass(storage.ObjectNotFoundError, FileNotFoundError)
    assert issubclass(storage.IntegrityError, ValueError)
    assert issubclass(storage.UnsupportedDtypeError, TypeError)
    assert issubclass(storage.UnknownProtocolError, ValueError)
    assert issubclass(storage.StorageUnavailableError, ConnectionError)
    for name in storage.__all__:
        obj = getattr(storage, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, storage.StorageError), name


@pytest.mark.parametrize("text", [
    b"", b"{}", b"[[]]", b'{"a":"[[[["}', b"[[[", b"]]][[", b'{"a":[1,{"b":[]}]}', b"[" * 150 + b"]" * 150,
    b'"\\"[" [', b'{"x":"\\\\"}[]', b'"unterminated [[', b'[{"k": "a\\"]}"}]', b"[" * 101 + b"]" * 101,
])
def test_json_depth_is_the_deepest_bracket_outside_strings(text):
    """The fast depth (innermost pairs removed in passes) agrees with a token-by-token scan, unbalanced too."""
    from storage import jsondepth

    depth = 0
    deepest = 0
    for match in jsondepth._TOKEN.finditer(text):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif match.group() in (b"]", b"}"):
            depth -= 1
    assert jsondepth.text_depth(text) == deepest
