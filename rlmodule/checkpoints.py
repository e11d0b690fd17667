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
objects with `to_dict`/`from_dict`. Classes resolve only through the trusted-class rule and an
allow-list: `$object` names a subclass of `object_bases()` (our configs and specs), `$type` one of
`type_bases()` (RLModule, Catalog, configs, specs). A malformed file raises CheckpointFormatError
naming it. Unlike RLlib, `save_to_path(state=...)` never mutates the caller's dict.
"""

from __future__ import annotations

import abc
import functools
import inspect
import posixpath
import tempfile
from collections.abc import Collection
from importlib import metadata as importlib_metadata
from typing import Any, Optional, Union

import gymnasium as gym

from rlmodule.errors import (
    CheckpointError, CheckpointFormatError, CheckpointNotFoundError, RLModuleError,
    StateMismatchError, StateSerializationError, UntrustedClassError,
)
from rlmodule.serialization import gym_space_from_dict, gym_space_to_dict, serialize_type
from rlmodule.state import join_state, split_state
from rlmodule.trust import resolve_class

CHECKPOINT_VERSION = "2.0"
CHECKPOINT_FORMAT = "rlreg.checkpoint/1"
READABLE_CHECKPOINT_VERSIONS = ("2.0",)

StateDict = dict


@functools.lru_cache(maxsize=1)
def rlreg_version() -> str:
    """The installed rlreg distribution's version ("0+unknown" when not installed); read once per process."""
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


def object_bases() -> tuple[type, ...]:
    """The classes (and their subclasses) a `$object` tag may name: our configs and specs."""
    from rlmodule.multi_rl_module import MultiRLModuleConfig, MultiRLModuleSpec
    from rlmodule.rl_module import RLModuleConfig, RLModuleSpec

    return (RLModuleConfig, RLModuleSpec, MultiRLModuleSpec, MultiRLModuleConfig)


def type_bases() -> tuple[type, ...]:
    """The classes (and their subclasses) a `$type` tag may name: modules, catalogs, configs, specs."""
    from rlmodule.catalog import Catalog
    from rlmodule.rl_module import RLModule

    return (RLModule, Catalog, *object_bases())


def _tagged_class(tag: str, path, bases, trusted_modules, where: str) -> type:
    try:
        return resolve_class(path, bases, trusted_modules)
    except UntrustedClassError as e:
        raise UntrustedClassError(f"{where}: tag {tag!r} names {path!r}, which is refused: {e}") from None


_BAD_VALUE = (KeyError, TypeError, ValueError, AttributeError)


def decode_value(value: Any, trusted_modules=None, where: str = "value") -> Any:
    """The constructor argument encoded by `encode_value`; refuses classes outside the allow-lists."""
    if isinstance(value, list):
        return [decode_value(v, trusted_modules, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if set(value) == {"$tuple"}:
        if not isinstance(value["$tuple"], list):
            raise CheckpointFormatError(
                f"{where}: tag '$tuple' holds a {type(value['$tuple']).__name__}, not a list")
        return tuple(decode_value(v, trusted_modules, f"{where}[{i}]")
                     for i, v in enumerate(value["$tuple"]))
    if set(value) == {"$space"}:
        try:
            return gym_space_from_dict(value["$space"])
        except _BAD_VALUE as e:
            raise CheckpointFormatError(f"{where}: tag '$space' holds no valid space: {e}") from None
    if set(value) == {"$type"}:
        return _tagged_class("$type", value["$type"], type_bases(), trusted_modules, where)
    if set(value) == {"$object", "value"}:
        path = value["$object"]
        cls = _tagged_class("$object", path, object_bases(), trusted_modules, where)
        try:
            return _from_dict(cls, value["value"], trusted_modules)
        except UntrustedClassError as e:
            raise UntrustedClassError(f"{where}: {e}") from None
        except RLModuleError:
            raise
        except _BAD_VALUE as e:
            raise CheckpointFormatError(
                f"{where}: tag '$object' {path!r} cannot be rebuilt from its value: "
                f"{type(e).__name__}: {e}") from None
    return {k: decode_value(v, trusted_modules, f"{where}[{k!r}]") for k, v in value.items()}


# --- reading helpers --------------------------------------------------------------------------

def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _require_dir(loc) -> None:
    if loc.isdir():
        return
    try:  # listing says why (e.g. rlreg://name/9: "no version 9 (latest is 3)"); isdir() cannot
        loc.listdir()
    except FileNotFoundError as exc:
        why = str(exc.__cause__ or exc.__context__ or exc)
        raise CheckpointNotFoundError(f"checkpoint folder {loc.url} not found: {why}") from None
    raise CheckpointNotFoundError(f"checkpoint folder {loc.url} not found")


def _file_url(loc, name: str) -> str:
    return f"{loc.url.rstrip('/')}/{name}"


def read_json_object(loc, name: str) -> dict:
    """The JSON object in the checkpoint file `name`; refuses a missing file, bad JSON or a non-object."""
    try:
        data = loc.read_json(name)
    except OSError:  # (storage's errors for a missing file, a file in the way, a refusal, an outage)
        if loc.exists(name):  # there, but not what it refers to (a stored object of rlreg://), or not readable
            raise
        raise _missing(loc, name) from None
    except ValueError as e:  # storage's message names the file and the JSON error
        raise CheckpointFormatError(f"checkpoint file {e}") from None
    if not isinstance(data, dict):
        raise CheckpointFormatError(
            f"checkpoint file {_file_url(loc, name)} holds a JSON {type(data).__name__}, "
            "not an object")
    return data


def read_metadata(loc, metadata_file: str = "metadata.json", *, folder_checked: bool = False) -> dict:
    """The checked metadata of the checkpoint at `loc`; refuses unknown formats and versions
    (`folder_checked`: the caller has checked that `loc` is a folder)."""
    if not folder_checked:
        _require_dir(loc)
    meta = read_json_object(loc, metadata_file)
    fmt = meta.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise CheckpointFormatError(
            f"checkpoint {loc.url} has format {fmt!r}; this rlreg reads {CHECKPOINT_FORMAT!r}"
            + (_rllib_hint(meta) if fmt is None else ""))
    version = meta.get("checkpoint_version")
    if version not in READABLE_CHECKPOINT_VERSIONS:
        raise CheckpointFormatError(
            f"checkpoint {loc.url} has checkpoint_version {version!r}; this rlreg reads "
            + ", ".join(repr(v) for v in READABLE_CHECKPOINT_VERSIONS))
    return meta


def _rllib_hint(meta: dict) -> str:
    """What to do with a checkpoint RLlib wrote (its pickles are never loaded by from_checkpoint)."""
    if "ray_version" not in meta and not str(meta.get("class_and_ctor_args_file", "")).endswith(".pkl"):
        return " (RLlib pickle checkpoints are not read)"
    return (f": it is an RLlib {meta.get('ray_version', '')} checkpoint (pickle files), which "
            "RLModule.from_checkpoint does not read; import it with `rlreg import NAME PATH "
            "--from-rllib` (Registry.import_checkpoint(..., from_rllib=True) or "
            "rlmodule.rllib_checkpoint.load_rllib_checkpoint), which decodes it without unpickling")


def metadata_file_name(loc, meta: dict, key: str, default: str, suffix: str,
                       metadata_file: str = "metadata.json") -> str:
    """The file named by `meta[key]`: a plain name inside the checkpoint folder ending in `suffix`."""
    name = meta.get(key, default)
    if (not isinstance(name, str) or len(name) <= len(suffix) or not name.endswith(suffix)
            or name != posixpath.basename(name) or "\\" in name or name.startswith(".")):
        raise CheckpointFormatError(
            f"checkpoint file {_file_url(loc, metadata_file)}: {key} {name!r} is not a file "
            f"name ending in {suffix!r} inside the checkpoint folder")
    return name


def _missing(loc, name: str) -> CheckpointNotFoundError:
    """The checkpoint file `name` is missing (asked once a read failed: no lookup comes before each read)."""
    return CheckpointNotFoundError(f"{loc.url} is not a complete checkpoint: {name} is missing")


def read_tensors(loc, name: str) -> dict:
    """The tensors of the checkpoint's safetensors file `name`; refuses a missing or damaged file."""
    from storage import IntegrityError

    try:
        return loc.load_tensors(name)
    except OSError:  # (storage's errors for a missing file, a file in the way, a refusal, an outage)
        if loc.exists(name):  # there, but not what it refers to (a stored object of rlreg://), or not readable
            raise
        raise _missing(loc, name) from None
    except IntegrityError:  # verified tensors (rlreg://) whose stored bytes are damaged: said as such
        raise
    except ValueError as e:  # storage's FormatError: truncated file, bad header or offsets
        raise CheckpointFormatError(
            f"checkpoint file {_file_url(loc, name)} is not a valid safetensors file: {e}") from None


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
        meta = read_metadata(loc, self.METADATA_FILE_NAME, folder_checked=True)  # (_restore_plan checked it)
        state_file = metadata_file_name(loc, meta, "state_file", self.STATE_FILE_NAME + ".safetensors",
                                        ".safetensors", self.METADATA_FILE_NAME)
        json_file = state_file.removesuffix(".safetensors") + ".json"
        tensors = read_tensors(loc, state_file)
        rest = read_json_object(loc, json_file)
        try:
            return join_state(tensors, rest)
        except StateSerializationError as e:
            raise CheckpointFormatError(f"checkpoint {loc.url}: {e}") from None

    def restore_from_path(self, path, *, component: Optional[str] = None, **kwargs) -> None:
        """Restores state from `path`; with `component`, `path` is that component's own folder.

        Every state file is read and checked (`check_state`, `unknown_state_keys`) before any
        `set_state` runs, so a missing file, a misfit tensor or a tensor the module does not have
        anywhere in the tree leaves every component as it was. Unlike `set_state` (RLlib's
        `strict=False`), a checkpoint's unknown tensor keys are refused.
        """
        plan = self._restore_plan(as_location(path), component, kwargs)
        alone = len(plan) == 1  # nothing else to leave unchanged if this one refuses
        for target, state, loc in plan:
            if isinstance(state, _Deferred):
                continue
            if not (alone and target.restore_state_checks):
                target.check_state(state)
            unknown = target.unknown_state_keys(state)
            if unknown:
                raise StateMismatchError(
                    f"checkpoint {loc.url}: {type(target).__name__} has no state key"
                    f"{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                    "the checkpoint was saved from a different module")
        for target, state, _ in plan:
            if isinstance(state, _Deferred):
                target.restore_from_path(state.loc, component=state.component, **kwargs)
            else:
                target.restore_state(state)

    # True where restore_state runs check_state's checks itself before it changes anything: a restore
    # of this component alone then skips the separate check_state pass
    restore_state_checks = False

    def restore_state(self, state: StateDict) -> None:
        """`set_state` of a state `restore_from_path` read: its tensors are fresh and held by nothing
        else, so a component may take them as its own instead of copying them (TorchRLModule does)."""
        self.set_state(state)

    def check_state(self, state: StateDict) -> None:
        """Raises if `state` cannot be set on this component (called before any set_state)."""

    def unknown_state_keys(self, state: StateDict) -> list[str]:
        """Keys of a checkpoint's `state` this component does not have ([] here: none checked)."""
        return []

    def missing_state_keys(self, state: StateDict) -> list[str]:
        """Keys of this component a checkpoint's `state` must hold but does not ([] here: none checked)."""
        return []

    def _restore_plan(self, loc, component, kwargs) -> list:
        """(component, state, folder) triples to set, subcomponents first, as RLlib restores them."""
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
                plan.append((comp, _Deferred(comp_loc, comp_arg), comp_loc))
        if component is None:
            plan.append((self, own_state, loc))
        return plan

    @classmethod
    def from_checkpoint(cls, path, *, trusted_modules=None, **kwargs) -> "Checkpointable":
        """A new instance of the saved class (a subclass of `cls`), restored from `path`."""
        loc = as_location(path)
        meta = read_metadata(loc, cls.METADATA_FILE_NAME)
        ctor_file = metadata_file_name(loc, meta, "class_and_ctor_args_file",
                                       cls.CLASS_AND_CTOR_ARGS_FILE_NAME, ".json",
                                       cls.METADATA_FILE_NAME)
        ctor = read_json_object(loc, ctor_file)
        klass = resolve_class(ctor.get("class"), cls, trusted_modules)
        args, ctor_kwargs = _decode_ctor(ctor, trusted_modules, _file_url(loc, ctor_file))
        args, ctor_kwargs = klass._override_ctor_args(list(args), dict(ctor_kwargs), kwargs)
        _refuse_unused(klass, kwargs)
        obj = _construct(klass, args, ctor_kwargs, _file_url(loc, ctor_file))
        obj.restore_from_path(loc, **kwargs)
        return obj

    @classmethod
    def _override_ctor_args(cls, args: list, ctor_kwargs: dict, overrides: dict) -> tuple[list, dict]:
        """The stored (args, kwargs) with `overrides` that name constructor parameters applied.

        RLlib 2.38's rule: a keyword of `from_checkpoint` naming a parameter of the constructor
        replaces the stored positional argument or keyword; it is popped from `overrides`.
        """
        params = list(inspect.signature(cls.__init__).parameters.items())[1:]
        for i, (name, param) in enumerate(params):
            if name not in overrides:
                continue
            value = overrides.pop(name)
            if param.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD and len(args) > i:
                args[i] = value
            else:
                ctor_kwargs[name] = value
        return args, ctor_kwargs


def _decode_ctor(ctor: dict, trusted_modules, url: str) -> tuple[list, dict]:
    """The decoded (ctor_args, ctor_kwargs) of a class_and_ctor_args.json object."""
    args, kwargs = ctor.get("ctor_args", []), ctor.get("ctor_kwargs", {})
    if not isinstance(args, list):
        raise CheckpointFormatError(
            f"checkpoint file {url}: ctor_args is a JSON {type(args).__name__}, not a list")
    if not isinstance(kwargs, dict):
        raise CheckpointFormatError(
            f"checkpoint file {url}: ctor_kwargs is a JSON {type(kwargs).__name__}, not an object")
    try:
        return (decode_value(args, trusted_modules, "ctor_args"),
                decode_value(kwargs, trusted_modules, "ctor_kwargs"))
    except (CheckpointFormatError, UntrustedClassError) as e:
        raise type(e)(f"checkpoint file {url}: {e}") from None


def _refuse_unused(klass: type, kwargs: dict) -> None:
    """Keywords of `from_checkpoint` that neither the constructor nor restore_from_path takes."""
    unused = sorted(set(kwargs) - {"component"})
    if unused:
        raise TypeError(
            f"from_checkpoint() got keyword argument{'s' if len(unused) > 1 else ''} "
            f"{', '.join(map(repr, unused))} that neither {klass.__name__}'s constructor nor "
            "restore_from_path takes")


def _construct(klass: type, args: list, kwargs: dict, url: str):
    """`klass(*args, **kwargs)`; arguments the constructor refuses raise CheckpointFormatError."""
    try:
        return klass(*args, **kwargs)
    except RLModuleError:
        raise
    except _BAD_VALUE as e:
        raise CheckpointFormatError(
            f"checkpoint file {url}: {serialize_type(klass)} cannot be built from its ctor_args "
            f"and ctor_kwargs: {type(e).__name__}: {e}") from e
