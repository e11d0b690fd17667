"""`Checkpointable`: RLlib's checkpoint tree with JSON and safetensors in place of pickle.

Layout of `save_to_path(path)` (any `storage.Location` URL: a folder, file://, memory://, s3://):

    path/metadata.json               get_metadata() + checkpoint_version "2.0" + format
    path/class_and_ctor_args.json    {"class": "pkg.mod.Cls", "ctor_args": [..], "ctor_kwargs": {..}}
    path/<STATE_FILE_NAME>.safetensors   tensors of the own state (split_state keys)
    path/<STATE_FILE_NAME>.json          the rest of the own state (JSON)
    path/<component>/...             one sub-folder per checkpointable component

`metadata.json` is written last, so a folder without it is an incomplete checkpoint.
Constructor arguments are JSON with tags: `{"$space": ..}` for gym spaces, `{"$type": path}`
for classes, `{"$tuple": [..]}` for tuples and `{"$object": path, "value": obj.to_dict()}` for
objects with `to_dict`/`from_dict` (RLModuleConfig, specs). Classes resolve only through the
trusted-class rule. Unlike RLlib, `save_to_path(state=...)` never mutates the caller's dict.
"""

from __future__ import annotations

import abc
import inspect
import tempfile
from collections.abc import Collection
from importlib import metadata as importlib_metadata
from typing import Any, Optional, Union

import gymnasium as gym

from rlmodule.errors import (
    CheckpointError, CheckpointFormatError, CheckpointNotFoundError, StateSerializationError,
)
from rlmodule.serialization import gym_space_from_dict, gym_space_to_dict, serialize_type
from rlmodule.state import join_state, split_state
from rlmodule.trust import resolve_class

CHECKPOINT_VERSION = "2.0"
CHECKPOINT_FORMAT = "rlreg.checkpoint/1"
READABLE_CHECKPOINT_VERSIONS = ("2.0",)

StateDict = dict


def rlreg_version() -> str:
    """The installed rlreg distribution's version ("0+unknown" when not installed)."""
    try:
        return importlib_metadata.version("rlreg")
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


def as_location(path):
    """A `storage.Location` for a path, URL or Location."""
    from storage import Location

    if isinstance(path, Location):
        return path
    return Location(str(path))


# --- constructor arguments as JSON -------------------------------------------------------------

def encode_value(value: Any, where: str = "value") -> Any:
    """JSON for a constructor argument (tagged spaces, classes, tuples, to_dict objects)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [encode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"$tuple": [encode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise CheckpointError(f"{where}: dict key {bad[0]!r} is not a string")
        return {k: encode_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, gym.Space):
        return {"$space": gym_space_to_dict(value)}
    if isinstance(value, type):
        return {"$type": serialize_type(value)}
    if callable(getattr(value, "to_dict", None)) and callable(getattr(type(value), "from_dict", None)):
        return {"$object": serialize_type(type(value)), "value": value.to_dict()}
    raise CheckpointError(
        f"{where}: a {type(value).__name__} cannot be stored as JSON; constructor arguments "
        "must be JSON values, gym spaces, classes or objects with to_dict/from_dict")


def _from_dict(cls, d, trusted_modules):
    if "trusted_modules" in inspect.signature(cls.from_dict).parameters:
        return cls.from_dict(d, trusted_modules=trusted_modules)
    return cls.from_dict(d)


def decode_value(value: Any, trusted_modules=None) -> Any:
    """The constructor argument encoded by `encode_value`."""
    if isinstance(value, list):
        return [decode_value(v, trusted_modules) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"$tuple"}:
        return tuple(decode_value(v, trusted_modules) for v in value["$tuple"])
    if set(value) == {"$space"}:
        return gym_space_from_dict(value["$space"])
    if set(value) == {"$type"}:
        return resolve_class(value["$type"], object, trusted_modules)
    if set(value) == {"$object", "value"}:
        cls = resolve_class(value["$object"], object, trusted_modules)
        return _from_dict(cls, value["value"], trusted_modules)
    return {k: decode_value(v, trusted_modules) for k, v in value.items()}


# --- reading helpers --------------------------------------------------------------------------

def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _require_dir(loc) -> None:
    if not loc.isdir():
        raise CheckpointNotFoundError(f"checkpoint folder {loc.url} not found")


def read_metadata(loc, metadata_file: str = "metadata.json") -> dict:
    """The checked metadata of the checkpoint at `loc`; refuses unknown formats and versions."""
    _require_dir(loc)
    if not loc.exists(metadata_file):
        raise CheckpointNotFoundError(
            f"{loc.url} is not a complete checkpoint: {metadata_file} is missing")
    meta = loc.read_json(metadata_file)
    fmt = meta.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise CheckpointFormatError(
            f"checkpoint {loc.url} has format {fmt!r}; this rlreg reads {CHECKPOINT_FORMAT!r}"
            + (" (RLlib pickle checkpoints are not read)" if fmt is None else ""))
    version = meta.get("checkpoint_version")
    if version not in READABLE_CHECKPOINT_VERSIONS:
        raise CheckpointFormatError(
            f"checkpoint {loc.url} has checkpoint_version {version!r}; this rlreg reads "
            + ", ".join(repr(v) for v in READABLE_CHECKPOINT_VERSIONS))
    return meta


def _read_required(loc, name: str, reader):
    if not loc.exists(name):
        raise CheckpointNotFoundError(
            f"{loc.url} is not a complete checkpoint: {name} is missing")
    return reader(name)


class _Deferred:
    """A component restored by its own `restore_from_path` (not planned ahead)."""

    def __init__(self, loc, component) -> None:
        self.loc, self.component = loc, component


class Checkpointable(abc.ABC):
    """A component that saves to and restores from a checkpoint folder on any fsspec URL."""

    STATE_FILE_NAME = "state"
    CLASS_AND_CTOR_ARGS_FILE_NAME = "class_and_ctor_args.json"
    METADATA_FILE_NAME = "metadata.json"

    # -- the abstract API ---------------------------------------------------------------------
    @abc.abstractmethod
    def get_state(self, components: Optional[Union[str, Collection[str]]] = None, *,
                  not_components: Optional[Union[str, Collection[str]]] = None,
                  **kwargs) -> StateDict:
        """The state of this component (optionally only some sub-components)."""

    @abc.abstractmethod
    def set_state(self, state: StateDict) -> None:
        """Sets the state; keys missing from `state` leave their components unchanged."""

    @abc.abstractmethod
    def get_ctor_args_and_kwargs(self) -> tuple[tuple, dict]:
        """The (args, kwargs) that rebuild an equivalent empty instance."""

    def get_metadata(self) -> dict:
        """The JSON written to metadata.json (plus checkpoint_version and format)."""
        return {
            "class_and_ctor_args_file": self.CLASS_AND_CTOR_ARGS_FILE_NAME,
            "state_file": self.STATE_FILE_NAME + ".safetensors",
            "rlreg_version": rlreg_version(),
        }

    def get_checkpointable_components(self) -> list[tuple[str, "Checkpointable"]]:
        """(name, component) pairs saved to sub-folders of the checkpoint."""
        return []

    # -- component paths ("a/b") ------------------------------------------------------------
    @staticmethod
    def _check_component(name: str, components, not_components) -> bool:
        """True if component `name` is selected by `components` and not by `not_components`."""
        comps = _as_list(components)
        not_comps = _as_list(not_components)
        selected = components is None or name in comps or any(
            c.startswith(name + "/") for c in comps)
        return selected and name not in not_comps

    @staticmethod
    def _get_subcomponents(name: str, components) -> Optional[list[str]]:
        """The parts of `components` below `name` ("name/sub" -> "sub"), None if none."""
        if components is None:
            return None
        subs = [c[len(name) + 1:] for c in _as_list(components) if c.startswith(name + "/")]
        return subs or None

    # -- saving -------------------------------------------------------------------------------
    def save_to_path(self, path=None, *, state: Optional[StateDict] = None) -> str:
        """Saves this component (or `state`) to `path` (a new temp folder if None); returns its URL."""
        if path is None:
            path = tempfile.mkdtemp()
        loc = as_location(path)
        components = self.get_checkpointable_components()
        state_provided = bool(state)
        if state:
            state = dict(state)
        else:
            names = [name for name, _ in components]
            state = self.get_state(not_components=names) if names else self.get_state()
        args, kwargs = self.get_ctor_args_and_kwargs()
        ctor = {
            "class": serialize_type(type(self)),
            "ctor_args": encode_value(list(args), "ctor_args"),
            "ctor_kwargs": encode_value(dict(kwargs), "ctor_kwargs"),
        }
        tensors, rest = split_state({k: v for k, v in state.items()
                                     if k not in {n for n, _ in components}})
        loc.makedirs()
        for name, comp in components:
            if state_provided and name not in state:
                continue
            comp_state = state[name] if name in state else self.get_state(components=name)[name]
            comp.save_to_path(loc.child(name), state=comp_state)
        loc.save_tensors(self.STATE_FILE_NAME + ".safetensors", tensors)
        loc.write_json(self.STATE_FILE_NAME + ".json", rest)
        loc.write_json(self.CLASS_AND_CTOR_ARGS_FILE_NAME, ctor)
        meta = dict(self.get_metadata())
        meta.setdefault("checkpoint_version", CHECKPOINT_VERSION)
        meta["format"] = CHECKPOINT_FORMAT
        loc.write_json(self.METADATA_FILE_NAME, meta)
        return loc.url

    # -- restoring ----------------------------------------------------------------------------
    def _read_own_state(self, loc) -> StateDict:
        meta = read_metadata(loc, self.METADATA_FILE_NAME)
        state_file = meta.get("state_file", self.STATE_FILE_NAME + ".safetensors")
        json_file = state_file.removesuffix(".safetensors") + ".json"
        tensors = _read_required(loc, state_file, loc.load_tensors)
        rest = _read_required(loc, json_file, loc.read_json)
        try:
            return join_state(tensors, rest)
        except StateSerializationError as e:
            raise CheckpointError(f"checkpoint {loc.url}: {e}") from None

    def restore_from_path(self, path, *, component: Optional[str] = None, **kwargs) -> None:
        """Restores state from `path`; with `component`, `path` is that component's own folder.

        Every state file is read and checked (`check_state`) before any `set_state` runs, so
        a missing file or a misfit tensor anywhere in the tree leaves every component as it was.
        """
        plan = self._restore_plan(as_location(path), component, kwargs)
        for target, state in plan:
            if isinstance(state, _Deferred):
                continue
            target.check_state(state)
        for target, state in plan:
            if isinstance(state, _Deferred):
                target.restore_from_path(state.loc, component=state.component, **kwargs)
            else:
                target.set_state(state)

    def check_state(self, state: StateDict) -> None:
        """Raises if `state` cannot be set on this component (called before any set_state)."""

    def _restore_plan(self, loc, component, kwargs) -> list:
        """(component, state) pairs to set, subcomponents first, as RLlib restores them."""
        _require_dir(loc)
        own_state = self._read_own_state(loc) if component is None else None
        plan = []
        for name, comp in self.get_checkpointable_components():
            comp_arg = None
            if component is None:
                comp_loc = loc.child(name)
                if not comp_loc.isdir():
                    continue
            else:
                comp_loc = loc
                if component.startswith(name + "/"):
                    comp_arg = component[len(name) + 1:]
                elif component != name:
                    continue
            if type(comp).restore_from_path is Checkpointable.restore_from_path:
                plan.extend(comp._restore_plan(comp_loc, comp_arg, kwargs))
            else:  # a component with its own restore logic restores itself, in order
                plan.append((comp, _Deferred(comp_loc, comp_arg)))
        if component is None:
            plan.append((self, own_state))
        return plan

    @classmethod
    def from_checkpoint(cls, path, *, trusted_modules=None, **kwargs) -> "Checkpointable":
        """A new instance of the saved class (a subclass of `cls`), restored from `path`."""
        loc = as_location(path)
        meta = read_metadata(loc, cls.METADATA_FILE_NAME)
        ctor_file = meta.get("class_and_ctor_args_file", cls.CLASS_AND_CTOR_ARGS_FILE_NAME)
        ctor = _read_required(loc, ctor_file, loc.read_json)
        klass = resolve_class(ctor.get("class"), cls, trusted_modules)
        args = decode_value(ctor.get("ctor_args", []), trusted_modules)
        ctor_kwargs = decode_value(ctor.get("ctor_kwargs", {}), trusted_modules)
        obj = klass(*args, **ctor_kwargs)
        obj.restore_from_path(loc, **kwargs)
        return obj
