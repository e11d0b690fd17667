"""The allow-list of names an RLlib checkpoint's pickles may hold, each mapped to our own code.

`RLLIB_GLOBALS` ("module.name" -> `pickle_free.Handler`) is what `rllib_checkpoint` decodes with:
numpy and OrderedDict (from `pickle_free`), gymnasium's and RLlib's spaces rebuilt from their
pickled `__dict__` through their public constructors (a seeded space's numpy Generator, bit
generator and SeedSequence are checked and dropped: `NumpyRandom`), and RLlib's spec, config,
module and catalog classes (2.35 through 2.60 names) mapped to rlmodule's. Nothing here imports
ray or gymnasium internals; every object is built by calling our classes with checked, plain
arguments.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from rlmodule.limits import check_shape
from rlmodule.pickle_free import _NO_STATE, COLLECTIONS_GLOBALS, NUMPY_GLOBALS, Handler
from rlmodule.spaces import FlexDict, Repeated, Simplex

__all__ = ["RLLIB_GLOBALS", "RLLIB_MODULE_CLASSES"]


def _state(state, allowed: set[str], name: str) -> dict:
    if not isinstance(state, dict):
        raise ValueError(f"{name} state is a {type(state).__name__}, not a dict")
    unknown = sorted(set(state) - allowed)
    if unknown:
        raise ValueError(f"{name} state has unexpected field(s) {unknown}")
    if "_np_random" in allowed:  # a space's: its RNG (if any) is checked and dropped
        _dropped_rng(state, name)
    return state


def _int(value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _array(value, name: str) -> np.ndarray:
    if not isinstance(value, (np.ndarray, np.generic)):
        raise ValueError(f"{name} is a {type(value).__name__}, not a numpy array")
    return np.asarray(value)


_SPACE_COMMON = {"_shape", "dtype", "_np_random", "np_random"}


# -- a space's random number generator -----------------------------------------------------------
# A seeded or sampled space (every space of an env runner's module) pickles its `_np_random`: a
# numpy Generator, its bit generator (PCG64, ...) and, under numpy 2, the SeedSequence it came from.
# What we record is the space, not its RNG: each of these names is rebuilt as an inert placeholder
# from plain arguments and state (checked, never passed to numpy), which the space handlers drop.

@dataclass(frozen=True)
class NumpyRandom:
    """Where a pickle held a numpy Generator, BitGenerator or SeedSequence (never rebuilt)."""

    kind: str  # "Generator", "BitGenerator", "SeedSequence", or "class" (a bit generator class)
    name: str = ""


_BIT_GENERATORS = {"_mt19937": "MT19937", "_pcg64": ("PCG64", "PCG64DXSM"), "_philox": "Philox",
                   "_sfc64": "SFC64"}
_BIT_GENERATOR_NAMES = {"MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"}
_RNG_DEPTH = 4


def _rng_plain(value, depth: int = 0) -> None:
    """Refuse RNG state that is not plain numbers, strings and numeric arrays (a few levels deep)."""
    if depth > _RNG_DEPTH:
        raise ValueError("random generator state nested too deep")
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype.kind not in "biuf":
            raise ValueError(f"random generator state holds a {value.dtype} array")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _rng_plain(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("random generator state has a key that is not a string")
            _rng_plain(item, depth + 1)
        return
    raise ValueError(f"random generator state holds a {type(value).__name__}")


def _is(value, kind: str, name: str | None = None) -> bool:
    return isinstance(value, NumpyRandom) and value.kind == kind and name in (None, value.name)


def _bit_generator_name(value) -> str:
    if _is(value, "class") and value.name in _BIT_GENERATOR_NAMES:
        return value.name
    if isinstance(value, str) and value in _BIT_GENERATOR_NAMES:
        return value
    raise ValueError(f"{_short(value)} is not a numpy bit generator (class or name)")


def _rng_state_dict(state) -> None:
    if not (isinstance(state, dict) and isinstance(state.get("bit_generator"), str)):
        raise ValueError("a bit generator's state is not its state dict")
    _rng_plain(state)


def _bit_generator(args, state) -> NumpyRandom:
    """`__bit_generator_ctor(PCG64 or "PCG64")` + BUILD(state dict, or (state dict, SeedSequence))."""
    if len(args) > 1:
        raise ValueError("expected one argument (the bit generator class or name)")
    name = _bit_generator_name(args[0]) if args else "MT19937"
    if isinstance(state, tuple):
        if len(state) != 2 or not (state[1] is None or _is(state[1], "SeedSequence")):
            raise ValueError("a bit generator's state is not (state dict, SeedSequence)")
        state = state[0]
    if state is not _NO_STATE:
        _rng_state_dict(state)
    return NumpyRandom("BitGenerator", name)


def _generator(args, state) -> NumpyRandom:
    """`__generator_ctor(bit generator)` (numpy 2) or `__generator_ctor("PCG64")` + BUILD(state) (numpy 1)."""
    if len(args) == 2 and _is(args[1], "ctor"):
        args = args[:1]
    if len(args) > 1:
        raise ValueError("expected one argument (a bit generator or its name)")
    bit = args[0] if args else "MT19937"
    name = bit.name if _is(bit, "BitGenerator") else _bit_generator_name(bit)
    if state is not _NO_STATE and state is not None:
        _rng_state_dict(state)
    return NumpyRandom("Generator", name)


def _seed_sequence(args, state) -> NumpyRandom:
    """Cython's `__pyx_unpickle_SeedSequence(SeedSequence, checksum, state)` (+ BUILD(state))."""
    if len(args) != 3 or not _is(args[0], "class", "SeedSequence") or not isinstance(
            args[1], int) or isinstance(args[1], bool):
        raise ValueError("expected (SeedSequence, checksum, state)")
    for part in (args[2], None if state is _NO_STATE else state):
        if part is not None and not isinstance(part, tuple):
            raise ValueError("a SeedSequence's state is not a tuple")
        _rng_plain(part)
    return NumpyRandom("SeedSequence")


def _rng_table() -> dict[str, Handler]:
    table = {}
    for module, names in _BIT_GENERATORS.items():
        for name in (names,) if isinstance(names, str) else names:
            path = f"numpy.random.{module}.{name}"
            table[path] = Handler(path, value=lambda _n=name: NumpyRandom("class", _n))
    seed = "numpy.random.bit_generator.SeedSequence"
    table[seed] = Handler(seed, value=lambda: NumpyRandom("class", "SeedSequence"))
    unpickle = "numpy.random.bit_generator.__pyx_unpickle_SeedSequence"
    table[unpickle] = Handler(unpickle, reduce=_seed_sequence)
    ctor = "numpy.random._pickle.__bit_generator_ctor"
    table[ctor] = Handler(ctor, reduce=_bit_generator, value=lambda: NumpyRandom("ctor"))
    gen = "numpy.random._pickle.__generator_ctor"
    table[gen] = Handler(gen, reduce=_generator)
    return table


def _dropped_rng(s: dict, name: str) -> dict:
    """The space state `s` after checking its RNG is none or a numpy Generator's (which we drop)."""
    for key in ("_np_random", "np_random"):
        value = s.get(key)
        if value is not None and not _is(value, "Generator"):
            what = (f"a numpy {value.kind}" if isinstance(value, NumpyRandom)
                    else f"a value of type {type(value).__name__}")
            raise ValueError(f"{name} state {key!r} is {what}, not a numpy Generator")
    return s


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _box(args, state) -> gym.spaces.Box:
    s = _state(state, _SPACE_COMMON | {"low", "high", "bounded_below", "bounded_above",
                                       "low_repr", "high_repr"}, "Box")
    return gym.spaces.Box(low=_array(s["low"], "low"), high=_array(s["high"], "high"),
                          shape=tuple(s["_shape"]), dtype=s["dtype"])


def _space_cost(shape, dtype, per_element, name: str) -> int:
    """`per_element` arrays of `shape` and `dtype` (bytes), the shape checked against the limit first."""
    shape = list(shape) if isinstance(shape, tuple) else shape
    elements = check_shape(shape, f"{name} shape")
    itemsize = np.dtype(dtype).itemsize if isinstance(dtype, (np.dtype, str)) else 8
    return elements * per_element(itemsize)


def _box_cost(args, state) -> int:
    """gymnasium's Box casts low and high to its dtype and adds two bool masks (before we charge
    what it made): 2 x itemsize + 2 bytes per element, charged before it is built."""
    if state is _NO_STATE:  # Box(low, high, shape, dtype name)
        shape, dtype = (args[2], args[3]) if len(args) == 4 else ((), None)
    else:
        shape, dtype = (state.get("_shape"), state.get("dtype")) if isinstance(state, dict) else ((), None)
    return _space_cost(shape, dtype, lambda size: 2 * size + 2, "Box")


def _multi_discrete_cost(args, state) -> int:
    """gymnasium's MultiDiscrete casts nvec to its dtype and makes a start array of the same."""
    if state is _NO_STATE:  # MultiDiscrete(nvec, dtype name, None, start)
        nvec, dtype = (args[0], args[1]) if len(args) == 4 else (None, None)
    else:
        nvec, dtype = (state.get("nvec"), state.get("dtype")) if isinstance(state, dict) else (None, None)
    shape = tuple(np.shape(nvec)) if isinstance(nvec, (np.ndarray, np.generic)) else ()
    return _space_cost(shape, dtype, lambda size: 2 * size, "MultiDiscrete nvec")


def _discrete(args, state) -> gym.spaces.Discrete:
    s = _state(state, _SPACE_COMMON | {"n", "start"}, "Discrete")
    return gym.spaces.Discrete(_int(s["n"]), start=_int(s.get("start", 0)))


def _multi_discrete(args, state) -> gym.spaces.MultiDiscrete:
    s = _state(state, _SPACE_COMMON | {"nvec", "start"}, "MultiDiscrete")
    start = s.get("start")
    kw = {} if start is None or not np.any(start) else {"start": _array(start, "start")}
    return gym.spaces.MultiDiscrete(_array(s["nvec"], "nvec"), dtype=s["dtype"], **kw)


def _multi_binary(args, state) -> gym.spaces.MultiBinary:
    s = _state(state, _SPACE_COMMON | {"n"}, "MultiBinary")
    n = s["n"]
    return gym.spaces.MultiBinary(_int(n) if np.ndim(n) == 0 else [_int(x) for x in np.ravel(n)])


def _tuple(args, state) -> gym.spaces.Tuple:
    s = _state(state, _SPACE_COMMON | {"spaces"}, "Tuple")
    return gym.spaces.Tuple(list(s["spaces"]))


def _dict(args, state) -> gym.spaces.Dict:
    s = _state(state, _SPACE_COMMON | {"spaces", "sort_keys"}, "Dict")
    return gym.spaces.Dict(OrderedDict(s["spaces"]))


def _text(args, state) -> gym.spaces.Text:
    s = _state(state, _SPACE_COMMON | {"min_length", "max_length", "_char_set", "_char_str", "_char_list",
                                       "_char_index"}, "Text")
    charset = s.get("_char_str") or "".join(sorted(s["_char_set"]))
    return gym.spaces.Text(_int(s["max_length"]), min_length=_int(s["min_length"]),
                           charset=str(charset))


def _simplex_dim(state) -> int:
    """The last size of a Simplex's `_shape`, its whole shape checked against MAX_SPACE_ELEMENTS."""
    s = _state(state, _SPACE_COMMON | {"dim", "concentration"}, "Simplex")
    shape = s.get("_shape")
    check_shape(list(shape) if isinstance(shape, tuple) else shape, "Simplex '_shape'")
    if not shape:
        raise ValueError("Simplex '_shape' is empty")
    return int(shape[-1])


def _simplex_cost(args, state) -> int:
    """Our Simplex builds its default concentration, a list then an array of `dim` ints."""
    return _simplex_dim(state) * (1 + np.dtype(int).itemsize)


def _simplex(args, state) -> Simplex:
    dim = _simplex_dim(state)  # (charged by _simplex_cost before this runs)
    s = state
    conc = _array(s["concentration"], "concentration")
    same = conc.shape == (dim,) and bool(np.all(conc == 1))  # the default: RLlib's np.array([1] * dim)
    return Simplex(tuple(s["_shape"]), concentration=None if same else conc, dtype=s["dtype"])


def _repeated(args, state) -> Repeated:
    s = _state(state, _SPACE_COMMON | {"child_space", "max_len"}, "Repeated")
    return Repeated(s["child_space"], _int(s["max_len"]))


def _flex_dict(args, state) -> FlexDict:
    s = _state(state, _SPACE_COMMON | {"spaces"}, "FlexDict")
    return FlexDict(dict(s["spaces"]))


def _space(path: str, fn: Callable, call: Callable | None = None,
           cost: Callable | None = None) -> tuple[str, Handler]:
    return path, Handler(path, new=fn, reduce=call, cost=cost)


def _called(build: Callable[..., gym.Space], checks: tuple) -> Callable:
    """REDUCE of a space class with positional arguments (what rlreg's RLlib export writes)."""
    def call(args, state):
        if state is not _NO_STATE or len(args) != len(checks):
            raise ValueError(f"expected {len(checks)} constructor arguments and no state")
        return build(*(check(a) for check, a in zip(checks, args)))
    return call


def _dtype_name(value) -> str:
    if not isinstance(value, str) or np.dtype(value).kind not in "biuf":
        raise ValueError(f"dtype {value!r} is not a numeric or bool dtype name")
    return value


def _none(value):
    if value is not None:
        raise ValueError(f"{value!r} where None (no seed) was expected")
    return None


def _space_list(value) -> list:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, gym.Space) for v in value):
        raise ValueError("Tuple's argument is not a list of spaces")
    return list(value)


def _space_dict(value) -> OrderedDict:
    if not isinstance(value, dict) or not all(isinstance(v, gym.Space) for v in value.values()):
        raise ValueError("Dict's argument is not a dict of spaces")
    return OrderedDict(value)


_SHAPE = lambda v: tuple(_int(x) for x in v)  # noqa: E731
_ARRAY = lambda v: _array(v, "argument")  # noqa: E731
_N = lambda v: _int(v) if np.ndim(v) == 0 else [_int(x) for x in v]  # noqa: E731

_SPACES = dict([
    _space("gymnasium.spaces.box.Box", _box,
           _called(gym.spaces.Box, (_ARRAY, _ARRAY, _SHAPE, _dtype_name)), _box_cost),
    _space("gymnasium.spaces.discrete.Discrete", _discrete,
           _called(gym.spaces.Discrete, (_int, _none, _int))),
    _space("gymnasium.spaces.multi_discrete.MultiDiscrete", _multi_discrete,
           _called(gym.spaces.MultiDiscrete, (_ARRAY, _dtype_name, _none, _ARRAY)), _multi_discrete_cost),
    _space("gymnasium.spaces.multi_binary.MultiBinary", _multi_binary,
           _called(gym.spaces.MultiBinary, (_N,))),
    _space("gymnasium.spaces.tuple.Tuple", _tuple, _called(gym.spaces.Tuple, (_space_list,))),
    _space("gymnasium.spaces.dict.Dict", _dict, _called(gym.spaces.Dict, (_space_dict,))),
    _space("gymnasium.spaces.text.Text", _text),
    ("ray.rllib.utils.spaces.simplex.Simplex",
     Handler("ray.rllib.utils.spaces.simplex.Simplex", new=_simplex, cost=_simplex_cost)),
    _space("ray.rllib.utils.spaces.repeated.Repeated", _repeated),
    _space("ray.rllib.utils.spaces.flexdict.FlexDict", _flex_dict),
])


# -- RLlib's classes -----------------------------------------------------------------------------

def _ppo_module():
    from rlmodule.ppo import PPOTorchRLModule
    return PPOTorchRLModule


def _ppo_catalog():
    from rlmodule.ppo import PPOCatalog
    return PPOCatalog


def _multi_module():
    from rlmodule.multi_rl_module import MultiRLModule
    return MultiRLModule


def _catalog():
    from rlmodule.catalog import Catalog
    return Catalog


# RLlib class path -> our class (as a value: `class`, `module_class`, `catalog_class`).
_CLASSES: dict[str, Callable[[], type]] = {
    "ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module.DefaultPPOTorchRLModule": _ppo_module,
    "ray.rllib.algorithms.ppo.torch.ppo_torch_rl_module.PPOTorchRLModule": _ppo_module,
    "ray.rllib.algorithms.ppo.ppo_catalog.PPOCatalog": _ppo_catalog,
    "ray.rllib.core.rl_module.multi_rl_module.MultiRLModule": _multi_module,
    "ray.rllib.core.rl_module.marl_module.MultiAgentRLModule": _multi_module,
    "ray.rllib.core.models.catalog.Catalog": _catalog,
}
RLLIB_MODULE_CLASSES = {path: fn for path, fn in _CLASSES.items() if not path.endswith("Catalog")}


def _model_config(value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"model_config is a {type(value).__name__}, not a dict")
    return dict(value)


def _rl_module_spec(args, state):
    from rlmodule.rl_module import RLModuleSpec

    s = _state(state, {"module_class", "observation_space", "action_space", "inference_only",
                       "learner_only", "model_config", "model_config_dict", "catalog_class",
                       "load_state_path"}, "RLModuleSpec")
    model = s.get("model_config") if s.get("model_config") is not None else s.get("model_config_dict")
    return RLModuleSpec(
        module_class=s.get("module_class"), observation_space=s.get("observation_space"),
        action_space=s.get("action_space"), inference_only=bool(s.get("inference_only")),
        learner_only=bool(s.get("learner_only")),
        model_config_dict=None if model is None else _model_config(model),
        catalog_class=s.get("catalog_class"), load_state_path=None)


def _rl_module_config(args, state):
    from rlmodule.rl_module import RLModuleConfig

    s = _state(state, {"observation_space", "action_space", "inference_only", "learner_only",
                       "model_config_dict", "catalog_class"}, "RLModuleConfig")
    return RLModuleConfig(
        observation_space=s.get("observation_space"), action_space=s.get("action_space"),
        inference_only=bool(s.get("inference_only")), learner_only=bool(s.get("learner_only")),
        model_config_dict=_model_config(s.get("model_config_dict")),
        catalog_class=s.get("catalog_class"))


def _multi_rl_module_config(args, state):
    from rlmodule.multi_rl_module import MultiRLModuleConfig

    s = _state(state, {"inference_only", "modules"}, "MultiRLModuleConfig")
    return MultiRLModuleConfig(inference_only=bool(s.get("inference_only")),
                               modules=dict(s.get("modules") or {}))


def _multi_rl_module_spec(args, state):
    from rlmodule.multi_rl_module import MultiRLModuleSpec

    s = _state(state, {"multi_rl_module_class", "observation_space", "action_space",
                       "inference_only", "learner_only", "model_config", "rl_module_specs",
                       "module_specs", "load_state_path", "modules_to_load"}, "MultiRLModuleSpec")
    specs = s.get("rl_module_specs") or s.get("module_specs")
    return MultiRLModuleSpec(module_specs=dict(specs or {}),
                             inference_only=bool(s.get("inference_only")))


def _default_model_config(args, state) -> dict:
    if not isinstance(state, dict):
        raise ValueError("DefaultModelConfig state is not a dict")
    return _model_config(state)


_OBJECTS = {
    "ray.rllib.core.rl_module.rl_module.RLModuleSpec": _rl_module_spec,
    "ray.rllib.core.rl_module.rl_module.SingleAgentRLModuleSpec": _rl_module_spec,
    "ray.rllib.core.rl_module.rl_module.RLModuleConfig": _rl_module_config,
    "ray.rllib.core.rl_module.multi_rl_module.MultiRLModuleConfig": _multi_rl_module_config,
    "ray.rllib.core.rl_module.multi_rl_module.MultiRLModuleSpec": _multi_rl_module_spec,
    "ray.rllib.core.rl_module.default_model_config.DefaultModelConfig": _default_model_config,
}


def _table() -> dict[str, Handler]:
    table: dict[str, Any] = {**NUMPY_GLOBALS, **COLLECTIONS_GLOBALS, **_SPACES, **_rng_table()}
    for path, fn in _CLASSES.items():
        table[path] = Handler(path, value=fn)
    for path, fn in _OBJECTS.items():
        table[path] = Handler(path, new=lambda args, state, _fn=fn: _fn(args, _require(state)))
    return table


def _require(state):
    if state is _NO_STATE:
        raise ValueError("the object has no state")
    return state


RLLIB_GLOBALS: dict[str, Handler] = _table()
