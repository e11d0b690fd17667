"""``Location``: a folder on any fsspec URL, with atomic writes, JSON and safetensors files."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storage import filesystems, jsondepth
from storage.errors import InvalidTensorNameError, ObjectNotFoundError
from storage.dtypes import check_name, format_dtype, itemsize
from storage.safetensors_format import chunks, header_bytes, layout, parse_header

if TYPE_CHECKING:
    import torch


class Location:
    """A folder on a plain path, ``file://``, ``memory://``, ``s3://bucket/prefix`` or any fsspec URL."""

    def __init__(self, url: str | Any, **storage_options: Any) -> None:
        url = str(url)
        self.storage_options = storage_options
        self.fs, self.path = filesystems.filesystem(url, storage_options)
        self.url = filesystems.url_of(self.fs, self.path)

    @classmethod
    def _on(cls, fs: Any, path: str, storage_options: dict[str, Any]) -> Location:
        loc = cls.__new__(cls)
        loc.fs, loc.path, loc.storage_options = fs, path, storage_options
        loc.url = filesystems.url_of(fs, path)
        return loc

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def child(self, name: str) -> Location:
        """The Location of the sub-folder ``name``."""
        return Location._on(self.fs, self._join(name), self.storage_options)

    def _join(self, name: str) -> str:
        if not isinstance(name, str) or not name:
            raise ValueError(f"file name {name!r} is not a non-empty string")
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"file name {name!r} must be a relative path without '.', '..' or '//'")
        return posixpath.join(self.path, name)

    def _url(self, name: str) -> str:
        return f"{self.url.rstrip('/')}/{name}"

    def exists(self, name: str | None = None) -> bool:
        """Whether this folder (or the file ``name`` in it) exists."""
        path = self.path if name is None else self._join(name)
        with filesystems.translate_errors(self.url if name is None else self._url(name)):
            return bool(self.fs.exists(path))

    def isdir(self) -> bool:
        """Whether this Location is an existing folder."""
        with filesystems.translate_errors(self.url):
            return bool(self.fs.isdir(self.path))

    def makedirs(self) -> None:
        """Create the folder (and parents); a no-op where folders are implicit."""
        with filesystems.translate_errors(self.url):
            self.fs.makedirs(self.path, exist_ok=True)

    def listdir(self) -> list[str]:
        """Sorted names of the direct children (files and folders)."""
        with filesystems.translate_errors(self.url):
            try:
                entries = self.fs.ls(self.path, detail=False)
            except FileNotFoundError:
                raise ObjectNotFoundError(f"not found: {self.url}") from None
        names = {posixpath.basename(str(e).rstrip("/")) for e in entries}
        return sorted(n for n in names if n and not n.startswith(".tmp-"))

    def read_bytes(self, name: str) -> bytes:
        """The content of the file ``name``; ``ObjectNotFoundError`` if missing."""
        path = self._join(name)
        with filesystems.translate_errors(self._url(name)):
            if filesystems.is_local(self.fs):
                return bytes(filesystems.read_regular(path))
            return self.fs.cat_file(path)

    def write_bytes(self, name: str, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` to the file ``name`` atomically."""
        path = self._join(name)
        with filesystems.translate_errors(self._url(name)):
            filesystems.atomic_write(self.fs, path, [data])

    def read_json(self, name: str) -> Any:
        """The parsed UTF-8 JSON file ``name`` (``JSONDepthError`` past ``MAX_JSON_DEPTH`` levels).

        A filesystem that holds parsed JSON (``serves_json``, as ``rlreg://`` does) hands over a
        fresh copy of it: the same value, not parsed again.
        """
        if getattr(self.fs, "serves_json", False):
            with filesystems.translate_errors(self._url(name)):
                return self.fs.read_json(self._join(name))
        data = self.read_bytes(name)
        try:
            return jsondepth.loads(data.decode("utf-8"), self._url(name))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self._url(name)} is not UTF-8 JSON: {exc}") from None

    def write_json(self, name: str, obj: Any) -> None:
        """Write ``obj`` as UTF-8 JSON with sorted keys, atomically."""
        text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
        self.write_bytes(name, (text + "\n").encode("utf-8"))

    def save_tensors(
        self, name: str, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
    ) -> None:
        """Write ``{key: tensor or ndarray}`` as one safetensors file, streamed and atomic."""
        from storage.tensors import to_raw  # torch, only when tensors are written

        raws = {check_name(k): to_raw(k, v) for k, v in tensors.items()}
        if "__metadata__" in raws:
            raise InvalidTensorNameError(
                f"{self._url(name)}: tensor name '__metadata__' is the safetensors header's own key "
                "(its metadata): rename that tensor")
        if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError(f"safetensors metadata must map str to str, got {dict(metadata)!r}")
        order = layout(raws)
        header = header_bytes(raws, order, metadata)
        path = self._join(name)
        with filesystems.translate_errors(self._url(name)):
            filesystems.atomic_write(self.fs, path, chunks(raws, order, header))

    def load_tensors(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors of the safetensors file ``name``, exact in dtype, shape and bytes.

        A filesystem that holds tensors rather than bytes (``serves_tensors``, as ``rlreg://``
        does) hands them over itself: no file is made, parsed or copied.
        """
        if getattr(self.fs, "serves_tensors", False):
            with filesystems.translate_errors(self._url(name)):
                return self.fs.load_tensors(self._join(name))
        buf = self._read_into_buffer(name)
        entries, _, start = parse_header(buf, self._url(name))
        from storage.tensors import BufferView  # torch, only when tensors are read

        view = BufferView(buf)
        return {
            key: view.tensor(start + e["data_offsets"][0], start + e["data_offsets"][1], e["dtype"], e["shape"])
            for key, e in sorted(entries.items())
        }

    def load_metadata(self, name: str) -> dict[str, str]:
        """The ``__metadata__`` of the safetensors file ``name``."""
        return parse_header(self.read_bytes(name), self._url(name))[1]

    def _read_into_buffer(self, name: str) -> bytearray:
        path = self._join(name)
        with filesystems.translate_errors(self._url(name)):
            if filesystems.is_local(self.fs):
                return filesystems.read_regular(path)
            return bytearray(self.fs.cat_file(path))  # writable: the tensors are views of it


def safetensors_bytes(tensors: Mapping[str, Any]) -> bytes:
    """The bytes of the safetensors file ``save_tensors`` writes for ``tensors`` (one copy)."""
    from storage.tensors import to_raw

    raws = {check_name(k): to_raw(k, v) for k, v in tensors.items()}
    order = layout(raws)
    return filesystems.join(chunks(raws, order, header_bytes(raws, order)))


@dataclass(frozen=True)
class _Described:
    """A tensor known by its manifest entry only (for the size of its file)."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    @property
    def itemsize(self) -> int:
        return itemsize(self.dtype)


def safetensors_size(entries: Mapping[str, Mapping[str, Any]]) -> int:
    """The size of the file ``safetensors_bytes`` makes of tensors described by manifest entries."""
    raws = {k: _Described(format_dtype(e["dtype"]), tuple(e["shape"]), int(e["nbytes"])) for k, e in entries.items()}
    return len(header_bytes(raws, layout(raws))) + sum(r.nbytes for r in raws.values())  # type: ignore[arg-type]
