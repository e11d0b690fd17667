"""Rebuild a module from a recorded spec and state, skipping the random initialisation it overwrites.

The module is first built on PyTorch's ``meta`` device (no memory, no random numbers), its storage
allocated (uninitialised) and then filled by ``set_state``. That is exact only if the state covers
every parameter and buffer, ``set_state`` is rlmodule's own (which writes every key it is given) and
the module keeps no other tensors; when anything says otherwise (the build fails on meta, a
non-persistent buffer, a tensor attribute, a key the state lacks, a custom ``set_state``) the module
is built the ordinary way instead.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import types
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from rlmodule import MultiRLModule, TorchRLModule, spec_from_dict
from rlmodule.torch_rl_module import stock_loading
from storage.tensors import ALIGNMENT, copy_bytes

log = logging.getLogger(__name__)
_NN_REGISTRIES = frozenset({"_parameters", "_buffers", "_modules"})
_WALK_LIMIT = 200_000  # objects a walk visits before it gives up (``reaches``: as if it had found one)
_ATOMS = (type, types.ModuleType, torch.Tensor, torch.dtype, torch.device, types.BuiltinFunctionType)
_PLAIN = frozenset({str, bytes, int, float, complex, bool, type(None)})  # (a subclass's instance may hold attributes)


def _atom(obj: Any) -> bool:
    """Nothing to walk into: a tensor, a class, a module, or a plain number or string (not a subclass's)."""
    return type(obj) in _PLAIN or isinstance(obj, _ATOMS)

# In-place random fills: on ``meta`` there are no values to fill.
_FILLS = frozenset(getattr(torch.Tensor, n) for n in (
    "normal_", "uniform_", "exponential_", "log_normal_", "cauchy_", "geometric_", "random_", "bernoulli_"))


class _NoFillsOnMeta(torch.overrides.TorchFunctionMode):
    """Skips a random fill (``Tensor.normal_``, ``nn.init.*_``) of a ``meta`` tensor: it has no values.

    torch implements some of them on ``meta`` in Python that imports ``torch._dynamo``: the first
    load of a module with an ``nn.Embedding`` (``normal_``) took 0.8 s, set ``TORCHINDUCTOR_CACHE_DIR``
    in ``os.environ`` and made a folder under the temporary folder. (A mode is per thread.)
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _FILLS or (getattr(func, "__module__", None) == "torch.nn.init" and func.__name__.endswith("_")):
            target = args[0] if args else kwargs.get("tensor")
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


@contextlib.contextmanager
def on_meta() -> Iterator[None]:
    """The context of a ``meta``-device build (here and ``registry.templates``): random fills skipped."""
    with torch.device("meta"), _NoFillsOnMeta():
        yield


def rebuild(spec: Mapping[str, Any], state: dict, tensors: Mapping[str, Any], trusted_modules=None) -> Any:
    """The module of ``spec`` with ``state`` set; ``tensors`` are its tensors by flat key."""
    module = _build_on_meta(spec, state, tensors, trusted_modules)
    if module is None:
        module = spec_object(spec, trusted_modules).build()
        module.set_state(state)
    return module


def metadata_only(spec: Mapping[str, Any], trusted_modules=None) -> Any:
    """The module of ``spec`` built on the ``meta`` device: its structure, without memory or random numbers.

    For what a checkpoint folder says besides its tensors (metadata, constructor arguments,
    components); built the ordinary way if it cannot be built on ``meta``.
    """
    try:
        with on_meta():
            return spec_object(spec, trusted_modules).build()
    except Exception as exc:  # noqa: BLE001 - any failure means: build it the ordinary way
        log.debug("meta-device build of %s failed (%r); building normally", spec.get("module_class"), exc)
        return spec_object(spec, trusted_modules).build()


def spec_object(spec: Mapping[str, Any], trusted_modules=None) -> Any:
    """The spec object of a spec dict, without ``load_state_path`` (the registry supplies the state)."""
    obj = spec_from_dict(dict(spec), trusted_modules=trusted_modules)
    _drop_load_state_path(obj)
    return obj


def _drop_load_state_path(spec: Any) -> None:
    if hasattr(spec, "load_state_path"):
        spec.load_state_path = None
    subs = getattr(spec, "module_specs", None)
    for sub in subs.values() if isinstance(subs, Mapping) else ():
        _drop_load_state_path(sub)


def _build_on_meta(spec: Mapping[str, Any], state: dict, tensors: Mapping[str, Any], trusted_modules) -> Any:
    spec_obj = spec_object(spec, trusted_modules)  # outside the meta context: class resolution may import
    try:
        with on_meta():
            module = spec_obj.build()
        roots = list(_torch_roots(module))
        if not roots or not all(_only_registered_tensors(root) and stock_loading(root) for root in roots) or (
                not _stock_set_state(module)):
            return None
        if _state_keys(module) != set(tensors):  # set_state must overwrite every tensor
            return None
        adopted = _adopted(module, tensors)
        if adopted is not None:
            for root in roots:
                _install(root, adopted)
        else:
            if not all(_allocate(root) for root in roots):
                return None
            if not _copy_in(module, tensors, ""):
                module.set_state(state)
        if _any_meta(roots):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means: build it the ordinary way
        log.debug("meta-device build of %s failed (%r); building normally", spec.get("module_class"), exc)
        return None
    return module


def _torch_roots(module: Any) -> Iterator[torch.nn.Module]:
    """The ``nn.Module`` trees that hold the module's tensors (a multi-module's sub-modules)."""
    if isinstance(module, torch.nn.Module):
        yield module
        return
    values = getattr(module, "values", None)
    if values is None:
        return
    for sub in values():
        yield from _torch_roots(sub)


def _allocate(root: torch.nn.Module) -> bool:
    """Give every meta parameter and buffer uninitialised CPU storage; False if one is unusual.

    Like ``Module.to_empty(device="cpu")``, whose first call costs a third of a second importing
    sympy (through ``torch._refs.empty_like``).
    """
    for sub in root.modules():
        for name, param in sub._parameters.items():
            if param is None:
                continue
            if type(param) is not torch.nn.Parameter:
                return False
            empty = torch.empty(param.shape, dtype=param.dtype)
            sub._parameters[name] = torch.nn.Parameter(empty, requires_grad=param.requires_grad)
        for name, buffer in sub._buffers.items():
            if buffer is not None:
                sub._buffers[name] = torch.empty(buffer.shape, dtype=buffer.dtype)
    return True


def _adopted(module: Any, tensors: Mapping[str, Any], slots: list[tuple[str, Any]] | None = None
             ) -> dict[int, torch.Tensor] | None:
    """``{id(meta tensor): the loaded tensor that takes its place}``, or None unless all match exactly.

    A load's tensors are verified, private (copy-on-write maps of local objects, or read into
    memory) and used by nothing else, so the module holds them as they are, where ``set_state``
    would copy each into fresh memory: no copy, and no page of fresh memory until one is written.
    Only for same-dtype, same-shape, contiguous CPU tensors that start on a 64-byte boundary, as
    ``Store.get(aligned=True)`` gives them; anything else is copied in as before.
    ``slots``: ``state_slots(module)``, if kept.
    """
    metas = state_slots(module) if slots is None else slots
    if metas is None:
        return None
    srcs = [tensors[key] for key, _ in metas]
    for (_, meta), src in zip(metas, srcs):
        if not isinstance(src, torch.Tensor) or type(meta) not in (torch.nn.Parameter, torch.Tensor):
            return None
        if (src.dtype, src.shape, src.device.type) != (meta.dtype, meta.shape, "cpu") or not src.is_contiguous():
            return None
        if src.data_ptr() % ALIGNMENT:  # kernels may round differently: Store.get(aligned=True) gives none such
            return None
    parameter = torch.nn.Parameter
    return {id(meta): parameter(src, meta.requires_grad) if type(meta) is parameter else src
            for (_, meta), src in zip(metas, srcs)}


def state_slots(module: Any, prefix: str = "") -> list[tuple[str, Any]] | None:
    """``[(flat state key, the tensor the module holds for it)]`` (``mid/key`` inside a multi-module);
    None if a part is neither an ``nn.Module`` nor a mapping of modules."""
    if isinstance(module, torch.nn.Module):
        return [(prefix + key, t) for key, t in module.state_dict(keep_vars=True).items()]
    items = getattr(module, "items", None)
    if items is None:
        return None
    out: list[tuple[str, Any]] = []
    for mid, sub in items():
        slots = state_slots(sub, f"{prefix}{mid}/")
        if slots is None:
            return None
        out += slots
    return out


def _install(root: torch.nn.Module, adopted: Mapping[int, torch.Tensor]) -> None:
    """Put ``adopted[id(t)]`` in place of every parameter and buffer ``t`` of the tree."""
    for sub in root.modules():
        for registry_ in (sub._parameters, sub._buffers):
            for name, t in registry_.items():
                if t is not None:
                    registry_[name] = adopted[id(t)]


def _copy_in(module: Any, tensors: Mapping[str, Any], prefix: str) -> bool:
    """Do what the stock ``set_state`` does (copy every tensor in), by one memcpy per tensor.

    torch's ``copy_`` (``load_state_dict``) splits large copies over its intra-op threads, which on
    a busy machine costs many times a memcpy. False (nothing copied yet or some copied: the caller
    then runs ``set_state``, which overwrites all) for anything but same-dtype, same-shape,
    contiguous CPU tensors.
    """
    if not isinstance(module, torch.nn.Module):
        return all(_copy_in(sub, tensors, f"{prefix}{mid}/") for mid, sub in module.items())
    pairs = [(dst, tensors[prefix + key]) for key, dst in module.state_dict(keep_vars=True).items()]
    for dst, src in pairs:
        src = torch.as_tensor(src)
        if (src.dtype, src.shape, src.device.type) != (dst.dtype, dst.shape, "cpu") or not (
            src.is_contiguous() and dst.is_contiguous()
        ):
            return False
    for dst, src in pairs:
        n = dst.numel() * dst.element_size()
        if n:
            copy_bytes(dst.data_ptr(), torch.as_tensor(src).data_ptr(), n)
    return True


def _stock_set_state(module: Any) -> bool:
    """True when every ``set_state`` involved is rlmodule's own, which writes every key it is given."""
    if isinstance(module, MultiRLModule):
        return type(module).set_state is MultiRLModule.set_state and all(map(_stock_set_state, module.values()))
    return type(module).set_state is TorchRLModule.set_state


def _state_keys(module: Any) -> set[str] | None:
    """The flat state keys the module's tensors would have (``mid/param`` inside a multi-module)."""
    slots = state_slots(module)
    return None if slots is None else {key for key, _ in slots}


def _only_registered_tensors(root: torch.nn.Module) -> bool:
    """True when every tensor the tree holds is a parameter or persistent buffer, none shared (tied)."""
    held = [t for named in (root.named_parameters, root.named_buffers) for _, t in named(remove_duplicate=False)]
    if len({id(t) for t in held}) != len(held):  # fresh storage per occurrence would untie them
        return False
    if len({t.untyped_storage()._cdata for t in held}) != len(held):  # nor a buffer viewing a parameter
        return False
    registered = {id(m) for m in root.modules()}

    def beyond(obj: Any) -> bool:  # (a registered module's tensors are walked as its own)
        return id(obj) not in registered

    for sub in root.modules():
        if sub._non_persistent_buffers_set:
            return False
        for key, value in vars(sub).items():  # a tensor anywhere else (a helper object's, a list's in a dict)
            if key not in _NN_REGISTRIES and reaches(value, _is_tensor, beyond):  # would stay on meta
                return False
    return True


def _is_tensor(obj: Any) -> bool:
    return isinstance(obj, torch.Tensor)


def reaches(start: Any, hit: Callable[[Any], bool], within: Callable[[Any], bool] | None = None) -> bool:
    """Whether an object ``hit`` is true of is reachable from ``start`` through attributes, items, slots
    and closures (or the walk is too large to tell); not walking into objects ``within`` is false of."""
    seen: set[int] = set()
    stack = [start]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if hit(obj) or len(seen) > _WALK_LIMIT:
            return True
        if _atom(obj) or (within is not None and not within(obj)):
            continue
        for ref in _referents(obj):  # (atoms looked at, not counted: a list of 300,000 numbers is no reason
            if not _atom(ref):  # to give up)
                stack.append(ref)
            elif hit(ref):
                return True
    return False


def _referents(obj: Any) -> list[Any]:
    if isinstance(obj, (dict, types.MappingProxyType)):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
        return list(obj)
    if isinstance(obj, types.FunctionType):
        cells = [c.cell_contents for c in obj.__closure__ or () if _filled_cell(c)]
        return [*cells, obj.__defaults__, obj.__kwdefaults__]
    if isinstance(obj, types.MethodType):
        return [obj.__self__, obj.__func__]
    if isinstance(obj, weakref.ref):
        return [obj()]
    if isinstance(obj, functools.partial):
        return [obj.func, obj.args, obj.keywords]
    out = [getattr(obj, "__dict__", None)]
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()) if not isinstance(getattr(cls, "__slots__", ()), str) else (cls.__slots__,):
            if slot.startswith("__") and not slot.endswith("__"):  # (a private slot: stored name-mangled)
                slot = f"_{cls.__name__.lstrip('_')}{slot}"
            out.append(getattr(obj, slot, None))
    return out


def _filled_cell(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _any_meta(roots: list[torch.nn.Module]) -> bool:
    return any(t.is_meta for root in roots for t in (*root.parameters(), *root.buffers()))
