"""RLlib's own checkpoint folders (2.35 through 2.60), read without unpickling and written for RLlib.

Reading (`load_rllib_checkpoint`): `metadata.json` names the files; `class_and_ctor_args.pkl`
(cloudpickle) and the state files (`module_state.pt` in 2.35, `module_state.pkl` in 2.60) are
decoded by `pickle_free.decode` with the allow-list of `rllib_globals` (RLlib's PPO module,
catalog, MultiRLModule, specs and configs map to ours); 2.60's `module_state.msgpack` is read with
msgpack and msgpack-numpy's array layout rebuilt by our code. Sub-folders restore sub-modules, as
RLlib's `restore_from_path` does, but a sub-module's folder may not be missing. Every state is
checked before any is set, against the module built on torch's meta device (no memory): a state
must hold every tensor of its module (but buffers RLlib before 2.40 did not have), where RLlib's
`set_state` (`strict=False`) would keep the initial values of those it lacks. A full module's
state holding exactly its inference-only tensors (RLlib's
`save_to_path(p, state=m.get_state(inference_only=True))`) is imported as the inference-only module
it is, with `inference_only=True` in its spec, rather than with a random value function.

Writing (`save_rllib_checkpoint`): the folder RLlib 2.60's `RLModule.from_checkpoint` and
`restore_from_path` read, for PPO modules and MultiRLModules of them: `metadata.json`
(checkpoint_version 2.1), `class_and_ctor_args.pkl` naming RLlib's own classes
(`DefaultPPOTorchRLModule`, `PPOCatalog`, `MultiRLModule`, `RLModuleSpec`), `module_state.pkl`
(an OrderedDict of numpy arrays). Writing a pickle of plain data is safe; reading one is what we
never do.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from collections import OrderedDict
from typing import Any

import gymnasium as gym
import numpy as np

from rlmodule.checkpoints import as_location
from rlmodule.errors import (CheckpointFormatError, CheckpointNotFoundError, PickleRefusedError,
                             StateMismatchError)
from rlmodule.pickle_free import decode
from rlmodule.rllib_globals import RLLIB_GLOBALS
from rlmodule.rllib_writer import Call as _Call, Global as _Global, New as _New, dumps as _dumps

__all__ = ["export_as", "is_rllib_checkpoint", "load_rllib_checkpoint", "rllib_metadata",
           "save_rllib_checkpoint"]
EXPORT_FORMATS = ("rlreg", "rllib")

_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a legacy torch.save file
STATE_NAMES = ("module_state.pkl", "module_state.pt", "module_state.msgpack")
EXPORT_RAY_VERSION = "2.60.0"
# a msgpack state may hold one map or list per this many bytes of the file, plus the floor
MSGPACK_BYTES_PER_CONTAINER = 16
MSGPACK_CONTAINER_FLOOR = 4096


def _url(loc, name: str) -> str:
    return f"{loc.url.rstrip('/')}/{name}"


def _read_json(loc, name: str):
    try:
        return json.loads(loc.read_bytes(name))
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"{_url(loc, name)} is missing") from None
    except ValueError as e:
        raise CheckpointFormatError(f"{_url(loc, name)} is not JSON: {e}") from None


def is_rllib_checkpoint(path) -> bool:
    """True if `path` is a folder RLlib's `save_to_path` wrote (its metadata names a .pkl file)."""
    loc = as_location(path)
    try:
        if not loc.isdir() or not loc.exists("metadata.json"):
            return loc.isdir() and loc.exists("class_and_ctor_args.pkl")
        meta = json.loads(loc.read_bytes("metadata.json"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and (
        "ray_version" in meta or str(meta.get("class_and_ctor_args_file", "")).endswith(".pkl"))


def rllib_metadata(path) -> dict:
    """RLlib's metadata.json of the checkpoint at `path` (ray_version, checkpoint_version, ...)."""
    loc = as_location(path)
    if not loc.isdir():
        raise CheckpointNotFoundError(f"checkpoint folder {loc.url} not found")
    meta = _read_json(loc, "metadata.json")
    if not isinstance(meta, dict):
        raise CheckpointFormatError(f"{_url(loc, 'metadata.json')} is not a JSON object")
    return meta


def _plain_name(loc, name, what: str) -> str:
    if not isinstance(name, str) or name != posixpath.basename(name) or not re.fullmatch(
            r"[\w.\-]+", name) or name.startswith("."):
        raise CheckpointFormatError(f"{_url(loc, 'metadata.json')}: {what} {name!r} is not a file "
                                    "name inside the checkpoint folder")
    return name


def _state_file(loc, meta: dict) -> str:
    stated = _plain_name(loc, meta.get("state_file", "module_state"), "state_file")
    candidates = [stated] if "." in stated else [stated + ".msgpack", stated + ".pkl"]
    candidates += [n for n in STATE_NAMES if n not in candidates]
    for name in candidates:
        if loc.exists(name):
            return name
    raise CheckpointNotFoundError(f"{loc.url} is not a complete RLlib checkpoint: no state file "
                                  f"({', '.join(candidates)})")


# -- reading ----------------------------------------------------------------------------------------

def _decode_file(loc, name: str):
    data = loc.read_bytes(name)
    if data[:2] == b"PK":
        raise CheckpointFormatError(
            f"{_url(loc, name)} is a torch.save zip archive; it is not read (torch.load unpickles)")
    if name.endswith(".msgpack"):
        return _decode_msgpack(data, _url(loc, name))
    return decode(data, RLLIB_GLOBALS, what=_url(loc, name))


def _decode_msgpack(data: bytes, url: str):
    try:
        import msgpack
    except ImportError:
        raise CheckpointFormatError(f"{url}: reading msgpack checkpoints needs the msgpack "
                                    "package (pip install msgpack)") from None
    most = len(data) // MSGPACK_BYTES_PER_CONTAINER + MSGPACK_CONTAINER_FLOOR
    made = [0]

    def counted(value):  # maps and lists a file of its size may hold: an empty one is 1 byte there,
        made[0] += 1  # ~60-230 in Python; refused as soon as there are more
        if made[0] > most:
            raise CheckpointFormatError(
                f"{url} holds more than {most:,} maps and lists ({MSGPACK_BYTES_PER_CONTAINER} bytes of "
                "the file each, beyond a floor): a state is a few maps of arrays; refused")
        return value

    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, list_hook=counted,
                               object_hook=lambda d: _msgpack_numpy(counted(d), url))
    except CheckpointFormatError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, OverflowError,
            msgpack.exceptions.ExtraData) as e:  # (a map as a key: TypeError unhashable)
        why = str(e) or ("nested too deeply" if isinstance(e, msgpack.exceptions.StackError) else type(e).__name__)
        raise CheckpointFormatError(f"{url} is not a readable msgpack file: {why}") from None


def _msgpack_numpy(d: dict, url: str):
    """msgpack-numpy's {nd, type, kind, shape, data} maps as arrays; object arrays refused."""
    nd = d.get(b"nd", d.get("nd"))
    if nd is None:
        return d
    get = lambda k: d.get(k.encode(), d.get(k))  # noqa: E731
    kind, typestr, raw, shape = get("kind"), get("type"), get("data"), get("shape")
    if kind not in (None, b"", "") or not isinstance(typestr, str) or not isinstance(raw, bytes):
        raise CheckpointFormatError(f"{url}: an array of kind {_short(kind)} / type {_short(typestr)} "
                                    "is not read (object and structured arrays hold pickles)")
    try:
        dtype = np.dtype(typestr)
    except (TypeError, ValueError):
        raise CheckpointFormatError(
            f"{url}: an array's type {_short(typestr)} is not a numpy dtype") from None
    if dtype.kind not in "biufc" or dtype.fields is not None:
        raise CheckpointFormatError(f"{url}: dtype {_short(typestr)} is not a numeric or bool dtype")
    if not nd:
        if len(raw) != dtype.itemsize:
            raise CheckpointFormatError(f"{url}: a {dtype} scalar of {len(raw)} bytes")
        return np.frombuffer(raw, dtype=dtype)[0].copy()
    if not isinstance(shape, (list, tuple)) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise CheckpointFormatError(f"{url}: an array's shape {_short(shape)} is not a list of sizes")
    if math.prod(shape) * dtype.itemsize != len(raw):
        raise CheckpointFormatError(f"{url}: {len(raw)} bytes do not fill an array of shape "
                                    f"{_short(list(shape))} and dtype {dtype}")
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(shape)).copy()


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_CONFIG_KEYS = ("observation_space", "action_space", "inference_only", "learner_only",
                "model_config", "catalog_class")


def _from_rllib_model_config(config: Any) -> Any:
    """RLlib 2.60's `head_fcnet_*` keys under their 2.35 names (`post_fcnet_*`), which ours read."""
    if not isinstance(config, dict):
        return config
    out = dict(config)
    for new, old in (("head_fcnet_hiddens", "post_fcnet_hiddens"),
                     ("head_fcnet_activation", "post_fcnet_activation")):
        if new in out and old not in out:
            out[old] = out.pop(new)
    return out


def _build(ctor: Any, url: str):
    """Our module from the decoded `class_and_ctor_args.pkl`; anything it cannot be built from is
    a `CheckpointFormatError` (the file is input: a wrong type there is not a bug of ours)."""
    from rlmodule.errors import RLModuleError
    from rlmodule.rl_module import RLModule

    if not (isinstance(ctor, dict) and isinstance(ctor.get("class"), type)
            and issubclass(ctor["class"], RLModule)):
        raise CheckpointFormatError(f"{url} does not hold an RLModule class and its arguments")
    klass, args_and_kwargs = ctor["class"], ctor.get("ctor_args_and_kwargs", ((), {}))
    if not (isinstance(args_and_kwargs, (list, tuple)) and len(args_and_kwargs) == 2
            and isinstance(args_and_kwargs[1], dict)):
        raise CheckpointFormatError(f"{url}: ctor_args_and_kwargs is not (args, kwargs)")
    args, kwargs = args_and_kwargs
    try:
        return _construct(klass, args, kwargs, url)
    except RLModuleError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ArithmeticError,
            NotImplementedError) as e:  # (NotImplementedError: an action space with no distribution)
        raise CheckpointFormatError(f"{url}: cannot build {klass.__name__} from the arguments it "
                                    f"holds ({type(e).__name__}: {e})") from e


def _construct(klass: type, args, kwargs: dict, url: str):
    from rlmodule.multi_rl_module import MultiRLModule
    from rlmodule.rl_module import RLModuleConfig

    args = list(args) if isinstance(args, (list, tuple)) else [args]
    for spec in _specs_in(args, kwargs, url):
        spec.model_config_dict = _from_rllib_model_config(spec.model_config_dict)
    if args and isinstance(args[0], RLModuleConfig):
        args[0].model_config_dict = _from_rllib_model_config(args[0].model_config_dict)
    if issubclass(klass, MultiRLModule) and not args:
        extra = {k: v for k, v in kwargs.items() if k not in ("rl_module_specs", "inference_only")
                 and v not in (None, False, {})}
        if extra:
            raise CheckpointFormatError(f"{url}: MultiRLModule arguments {sorted(extra)} are not read")
        return klass(rl_module_specs=kwargs.get("rl_module_specs") or {},
                     inference_only=kwargs.get("inference_only"))
    if not args:
        unknown = sorted(set(kwargs) - set(_CONFIG_KEYS))
        if unknown:
            raise CheckpointFormatError(f"{url}: constructor arguments {unknown} are not read")
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        kwargs["model_config"] = _from_rllib_model_config(kwargs.get("model_config"))
        kwargs["learner_only"] = bool(kwargs.get("learner_only"))
    return klass(*args, **kwargs)


def _specs_in(args, kwargs, url: str) -> list:
    """The sub-module specs of a MultiRLModule's arguments, each checked to build an RLModule."""
    from rlmodule.multi_rl_module import MultiRLModuleConfig
    from rlmodule.rl_module import RLModule, RLModuleSpec

    found = [kwargs.get("rl_module_specs") or {}]
    if args and isinstance(args[0], MultiRLModuleConfig):
        found.append(args[0].modules or {})
    specs = []
    for group in found:
        if not isinstance(group, dict):
            raise CheckpointFormatError(f"{url}: the sub-module specs are a {type(group).__name__}, "
                                        "not a dict")
        for mid, spec in group.items():
            if not isinstance(spec, RLModuleSpec):
                raise CheckpointFormatError(f"{url}: sub-module {mid!r} has a "
                                            f"{type(spec).__name__}, not an RLModuleSpec")
            cls = spec.module_class
            if not (isinstance(cls, type) and issubclass(cls, RLModule)):
                what = cls.__name__ if isinstance(cls, type) else f"a value of type {type(cls).__name__}"
                raise CheckpointFormatError(f"{url}: sub-module {mid!r}: module_class is {what}, "
                                            "not an RLModule class")
            specs.append(spec)
    return specs


def _plan(module, loc, plan: list, names: tuple = ()) -> None:
    """(names, component, state, state file URL) for `module` and its components, components first.

    A component's folder must be there (RLlib writes one per sub-module; skipping a missing one
    would leave that policy's initial weights in what is recorded)."""
    for name, component in module.get_checkpointable_components():
        sub = _component_folder(loc, name)
        _plan(component, sub, plan, names + (name,))
    state_file = _state_file(loc, rllib_metadata(loc))
    state = _decode_file(loc, state_file)
    if type(state) is int and state == _LEGACY_TORCH_MAGIC:  # (torch.save's legacy format: pickles after a magic number)
        raise CheckpointFormatError(f"{_url(loc, state_file)} is a legacy (non-zip) torch.save file; it is "
                                    "not read (torch.load unpickles)")
    if not isinstance(state, dict):
        raise CheckpointFormatError(f"{_url(loc, state_file)} holds a {type(state).__name__}, not a dict")
    plan.append((names, module, state, _url(loc, state_file)))


def _component_folder(loc, name):
    try:
        sub = loc.child(name)
    except ValueError:
        raise CheckpointFormatError(f"{loc.url}: module id {name!r} is not a folder name inside the "
                                    "checkpoint") from None
    if not sub.isdir():
        raise CheckpointNotFoundError(f"{loc.url} is not a complete RLlib checkpoint: the folder of "
                                      f"module {name!r} is missing")
    return sub


def _component(module, names: tuple):
    for name in names:
        module = dict(module.get_checkpointable_components())[name]
    return module


def _check(target, state: dict, url: str) -> None:
    """Refuses a state that does not fit `target`: a misfit tensor, a tensor it lacks, or one of
    its tensors the state does not hold (RLlib's `set_state` would keep the initial values)."""
    try:
        target.check_state(state)
    except StateMismatchError as e:
        raise StateMismatchError(f"RLlib checkpoint {url}: {e}") from None
    unknown = target.unknown_state_keys(state)
    if unknown:
        raise StateMismatchError(f"RLlib checkpoint {url}: {type(target).__name__} has no "
                                 f"state keys {', '.join(map(repr, unknown))}")
    missing = target.missing_state_keys(state)
    if missing:
        shown = ", ".join(map(repr, missing[:4])) + (f", ... ({len(missing) - 4} more)" if len(missing) > 4 else "")
        raise CheckpointFormatError(f"RLlib checkpoint {url} lacks {len(missing)} of the module's "
                                    f"tensors: {shown}")


def _inference_only_state(target, state: dict) -> bool:
    """Whether `state` is exactly what `target` (a full module) keeps when inference-only: what
    RLlib's `save_to_path(p, state=m.get_state(inference_only=True))` writes with metadata saying
    inference_only=False (RLlib loads it with a random value function)."""
    from rlmodule.multi_rl_module import MultiRLModule

    if isinstance(target, MultiRLModule) or getattr(target.config, "inference_only", True):
        return False
    hook = getattr(target, "_inference_only_get_state_hook", None)
    missing = target.missing_state_keys(state)
    if hook is None or not missing:
        return False
    own = target.state_dict(keep_vars=True)
    kept = hook(dict(own))
    return len(kept) < len(own) and not (set(missing) & set(kept)) and all(
        k in kept for k in state if k in own)


def _as_inference_only(ctor: dict, names: tuple) -> bool:
    """Marks the module at `names` (the top one, or a MultiRLModule's sub-module) inference-only in
    the decoded constructor arguments; False if it is not found there."""
    import dataclasses
    from rlmodule.multi_rl_module import MultiRLModuleConfig
    from rlmodule.rl_module import RLModuleConfig

    args, kwargs = ctor["ctor_args_and_kwargs"]
    args = args if isinstance(args, (list, tuple)) else (args,)
    if not names:
        if args and isinstance(args[0], RLModuleConfig):
            args[0].inference_only = True
        elif not args:
            kwargs["inference_only"] = True
        else:
            return False
        return True
    if len(names) != 1:
        return False
    for specs in (kwargs.get("rl_module_specs"),
                  args[0].modules if args and isinstance(args[0], MultiRLModuleConfig) else None):
        if isinstance(specs, dict) and names[0] in specs:  # (a copy: ids may share one spec object)
            specs[names[0]] = dataclasses.replace(specs[names[0]], inference_only=True)
            return True
    return False


def load_rllib_checkpoint(path):
    """Our module (PPO or MultiRLModule) with the state of the RLlib checkpoint at `path`.

    The module is first built on torch's meta device (its layers' shapes, no memory) and every
    state file is checked against it: a tensor of the wrong shape, one the module lacks, or one of
    the module's tensors a state file does not hold is refused before anything is allocated, so
    what the real build allocates is what the state files hold.
    """
    import torch

    loc = as_location(path)
    try:
        meta = rllib_metadata(loc)
        ctor_file, ctor = _ctor(loc, meta)
    except (CheckpointNotFoundError, PickleRefusedError) as e:
        inner = _rl_module_below(loc)
        if inner is None:
            raise
        raise CheckpointFormatError(f"{loc.url} is an RLlib checkpoint holding an RLModule (an Algorithm's, "
                                    f"LearnerGroup's, Learner's or EnvRunner's), not an RLModule one; its RLModule "
                                    f"checkpoint is {inner} "
                                    "(import that folder)") from e
    ctor_url = _url(loc, ctor_file)
    with torch.device("meta"):
        shape = _build(ctor, ctor_url)
    plan: list = []
    _plan(shape, loc, plan)
    inference_only = [names for names, target, state, _ in plan if _inference_only_state(target, state)]
    if inference_only and all(_as_inference_only(ctor, names) for names in inference_only):
        with torch.device("meta"):
            shape = _build(ctor, ctor_url)
        plan = [(names, _component(shape, names), state, url) for names, _, state, url in plan]
    for _, target, state, url in plan:
        _check(target, state, url)
    module = _build(ctor, ctor_url)
    for names, _, state, _ in plan:
        _component(module, names).set_state(state)
    return module


_RL_MODULE_FOLDERS = ("learner_group/learner/rl_module", "learner/rl_module", "rl_module")


def _rl_module_below(loc):
    """The URL of the RLModule checkpoint inside an Algorithm / LearnerGroup / Learner one, or None."""
    for sub in _RL_MODULE_FOLDERS:
        try:
            if loc.child(sub).exists("metadata.json"):
                return loc.child(sub).url
        except OSError:
            return None
    return None


def _ctor(loc, meta: dict):
    if "format" in meta:
        raise CheckpointFormatError(
            f"{loc.url} is an rlreg checkpoint ({meta['format']}), not one RLlib wrote; import it "
            "without --from-rllib (RLModule.from_checkpoint reads it)")
    ctor_file = _plain_name(loc, meta.get("class_and_ctor_args_file", "class_and_ctor_args.pkl"),
                            "class_and_ctor_args_file")
    if not loc.exists(ctor_file):
        raise CheckpointNotFoundError(f"{loc.url} is not a complete RLlib checkpoint: {ctor_file} is missing")
    return ctor_file, _decode_file(loc, ctor_file)


# -- writing ----------------------------------------------------------------------------------------

_RAY_PPO = _Global("ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module", "DefaultPPOTorchRLModule")
_RAY_CATALOG = _Global("ray.rllib.algorithms.ppo.ppo_catalog", "PPOCatalog")
_RAY_MULTI = _Global("ray.rllib.core.rl_module.multi_rl_module", "MultiRLModule")
_RAY_SPEC = _Global("ray.rllib.core.rl_module.rl_module", "RLModuleSpec")


def _space(space):
    """A gymnasium space as a call of its public constructor (stable across gymnasium releases)."""
    def g(mod: str, name: str) -> _Global:
        return _Global(f"gymnasium.spaces.{mod}", name)

    if space is None:
        return None
    kind = type(space)
    if kind is gym.spaces.Box:
        return _Call(g("box", "Box"), (space.low, space.high, tuple(space.shape), space.dtype.name))
    if kind is gym.spaces.Discrete:
        return _Call(g("discrete", "Discrete"), (int(space.n), None, int(space.start)))
    if kind is gym.spaces.MultiDiscrete:
        return _Call(g("multi_discrete", "MultiDiscrete"),
                     (space.nvec, space.dtype.name, None, space.start))
    if kind is gym.spaces.MultiBinary:
        return _Call(g("multi_binary", "MultiBinary"), (space.n,))
    if kind is gym.spaces.Tuple:
        return _Call(g("tuple", "Tuple"), ([_space(s) for s in space.spaces],))
    if kind is gym.spaces.Dict:
        return _Call(g("dict", "Dict"), (OrderedDict((k, _space(s)) for k, s in space.spaces.items()),))
    raise CheckpointFormatError(f"a {kind.__name__} space cannot be written for RLlib (Box, "
                                "Discrete, MultiDiscrete, MultiBinary, Tuple and Dict can)")


def _rllib_model_config(module) -> dict:
    """Our merged model config in RLlib 2.60's names (head_fcnet_* for post_fcnet_*).

    RLlib 2.60 has no `encoder_latent_dim` (it ignores the key); our encoder with one is the
    encoder RLlib builds for `fcnet_hiddens + [encoder_latent_dim]` (same layers, activations and
    state keys), so that is what is written.
    """
    from rlmodule.catalog import MODEL_DEFAULTS, _merged_model_config

    merged = _merged_model_config(module.config.model_config_dict)
    hiddens = [int(h) for h in merged["fcnet_hiddens"]]
    if merged.get("encoder_latent_dim"):
        hiddens.append(int(merged["encoder_latent_dim"]))
    # keys of the user's own (a custom module's settings): RLlib's model_config keeps them, and so does the export
    custom = {k: v for k, v in (module.config.model_config_dict or {}).items()
              if k not in MODEL_DEFAULTS and k != "hidden"}
    return {**custom,
            "fcnet_hiddens": hiddens,
            "fcnet_activation": _rllib_activation(merged["fcnet_activation"], "fcnet_activation"),
            "head_fcnet_hiddens": list(merged["post_fcnet_hiddens"]),
            "head_fcnet_activation": _rllib_activation(merged["post_fcnet_activation"],
                                                       "post_fcnet_activation"),
            "vf_share_layers": bool(merged["vf_share_layers"]),
            "free_log_std": bool(merged["free_log_std"]),
            "log_std_clip_param": float(merged.get("log_std_clip_param", 20.0))}


# our activation names (any case) -> a name RLlib 2.60's `get_activation_fn` resolves to the same
# torch class: it knows relu, tanh, elu, swish/silu (any case) and else `getattr(torch.nn, name)`,
# so "sigmoid" must be written "Sigmoid"
_RLLIB_ACTIVATIONS = {"tanh": "tanh", "relu": "relu", "elu": "elu", "swish": "silu", "silu": "silu",
                      "sigmoid": "Sigmoid"}


def _rllib_activation(name, key: str):
    if name is None or name == "linear":
        return name
    found = _RLLIB_ACTIVATIONS.get(name.lower()) if isinstance(name, str) else None
    if found is None:
        raise CheckpointFormatError(f"model config {key!r} {_short(name)} has no name RLlib resolves "
                                    f"(it knows {', '.join(sorted(_RLLIB_ACTIVATIONS))} and linear)")
    return found


def _ppo_kwargs(module) -> dict:
    from rlmodule.ppo import PPOCatalog, PPOTorchRLModule

    if type(module) is not PPOTorchRLModule or (module.config.catalog_class or PPOCatalog) is not PPOCatalog:
        raise CheckpointFormatError(
            f"{type(module).__name__} has no RLlib counterpart: --format rllib writes PPO modules "
            "(rlmodule.ppo.PPOTorchRLModule with PPOCatalog) and MultiRLModules of them")
    return {"observation_space": _space(module.config.observation_space),
            "action_space": _space(module.config.action_space),
            "inference_only": bool(module.config.inference_only),
            "learner_only": bool(module.config.learner_only),
            "model_config": _rllib_model_config(module), "catalog_class": _RAY_CATALOG}


def _write(loc, cls: _Global, kwargs: dict, state: dict) -> None:
    loc.makedirs()
    arrays = OrderedDict((k, np.asarray(v.detach().cpu().numpy(), order="C") if hasattr(v, "detach")
                          else np.asarray(v)) for k, v in state.items())
    loc.write_bytes("class_and_ctor_args.pkl",
                    _dumps({"class": cls, "ctor_args_and_kwargs": ((), kwargs)}))
    loc.write_bytes("module_state.pkl", _dumps(arrays))
    loc.write_bytes("metadata.json", json.dumps({
        "class_and_ctor_args_file": "class_and_ctor_args.pkl", "state_file": "module_state",
        "ray_version": EXPORT_RAY_VERSION, "ray_commit": "", "checkpoint_version": "2.1",
        "written_by": "rlreg"}).encode())


# the names `_write` gives files, and those a reader looks for: no module id's folder may be one
_WRITTEN_NAMES = ("metadata.json", "class_and_ctor_args.pkl") + STATE_NAMES


def save_rllib_checkpoint(module, path) -> str:
    """Write `module` (PPO, or a MultiRLModule of PPO modules) as RLlib 2.60 writes it; its URL."""
    from rlmodule.multi_rl_module import MultiRLModule

    loc = as_location(path)
    if isinstance(module, MultiRLModule):
        every = {}  # every sub-module checked before anything is written
        for mid, sub in module.items():
            taken = sorted(set(str(mid).split("/")) & set(_WRITTEN_NAMES))
            if taken:
                raise CheckpointFormatError(
                    f"MultiRLModule's module id {mid!r} cannot be written for RLlib: each module is "
                    f"written to a folder of its id, and {taken[0]!r} is the name of a checkpoint file "
                    "(rename the module)")
            try:
                every[mid] = _ppo_kwargs(sub), loc.child(mid)
            except CheckpointFormatError as e:
                raise CheckpointFormatError(f"MultiRLModule's module {mid!r}: {e}") from None
            except ValueError:
                raise CheckpointFormatError(f"MultiRLModule's module id {mid!r} is not a folder name: "
                                            "RLlib writes each module to a folder of its id") from None
        specs = {}
        for mid, (kwargs, sub_loc) in every.items():
            specs[mid] = _New(_RAY_SPEC, {
                "module_class": _RAY_PPO, **kwargs, "load_state_path": None, "model_config_dict": None})
            _write(sub_loc, _RAY_PPO, kwargs, module[mid].get_state())
        _write(loc, _RAY_MULTI, {"observation_space": None, "action_space": None,
                                 "inference_only": bool(module.config.inference_only),
                                 "learner_only": None, "model_config": None,
                                 "rl_module_specs": specs}, {})
    else:
        _write(loc, _RAY_PPO, _ppo_kwargs(module), module.get_state())
    return loc.url


def export_as(module, path, format: str = "rlreg") -> str:
    """`module.save_to_path(path)` ("rlreg") or `save_rllib_checkpoint` ("rllib"); the URL."""
    if format == "rlreg":
        return module.save_to_path(path)
    if format == "rllib":
        return save_rllib_checkpoint(module, path)
    raise ValueError(f"unknown checkpoint format {format!r}: expected one of {', '.join(EXPORT_FORMATS)}")
