"""TorchRLModule: an RLModule that is a `torch.nn.Module`; its state is its tensors.

`get_state()` returns the module's parameters and buffers as detached CPU torch tensors
(copies; RLlib converts to numpy, which cannot hold bfloat16). `set_state()` accepts torch
tensors or numpy arrays (numeric or bool; a non-native byte order is converted; 0-d stays 0-d) and,
for a 0-d tensor, a Python number (RLlib's numpy state holds those as `.item()`), and loads them
exactly: a key the module has must match its shape and
dtype (else `StateMismatchError` naming the key, and nothing is changed); keys the module lacks
are ignored and missing keys keep their values (RLlib's `strict=False`). `restore_from_path` is
stricter: it refuses a checkpoint's tensor keys the module lacks (`unknown_state_keys`), except
those an inference-only module drops from a learner's state (`_inference_only_get_state_hook`).
"""

from __future__ import annotations

import cmath
from collections import Counter
from typing import Any, Collection, Optional, Union

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlmodule.annotations import OverrideToImplementCustomLogic, override
from rlmodule.distributions import TorchCategorical, TorchDiagGaussian
from rlmodule.errors import StateMismatchError
from rlmodule.rl_module import RLModule, StateDict
from storage.tensors import ALIGNMENT  # where torch's CPU allocator starts a tensor (kernels may round otherwise)


def _as_tensor(key: str, value: Any, target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`value` (a tensor, a numpy array or scalar, or a Python number for a 0-d `target`) as a tensor."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.kind not in "biufc" or array.dtype.fields is not None:
            raise StateMismatchError(
                f"state key {key!r}: a {array.dtype} array is not a tensor (numeric and bool dtypes only)")
        if not array.dtype.isnative:  # (a big-endian file's): the same values in this machine's order
            array = array.astype(array.dtype.newbyteorder("="))
        return torch.from_numpy(np.asarray(array, order="C"))  # 0-d stays 0-d (ascontiguousarray: 1-d)
    if isinstance(value, (bool, int, float, complex)) and target is not None and target.dim() == 0:
        return _scalar_tensor(key, value, target)
    raise StateMismatchError(
        f"state key {key!r}: expected a tensor or numpy array, got {type(value).__name__}")


def _scalar_tensor(key: str, value: Any, target: torch.Tensor) -> torch.Tensor:
    """A Python number as the 0-d tensor `target` is (RLlib's numpy state holds 0-d tensors as `.item()`)."""
    dtype = target.dtype
    if isinstance(value, bool):
        fits = dtype == torch.bool
    elif isinstance(value, int):
        fits = dtype != torch.bool and not dtype.is_complex
    elif isinstance(value, float):
        fits = dtype.is_floating_point or dtype.is_complex
    else:
        fits = dtype.is_complex
    if fits:
        try:
            out = torch.tensor(value, dtype=dtype)
        except (RuntimeError, OverflowError, TypeError, ValueError):
            out = None
        if out is not None and _exact(value, out):
            return out
    raise StateMismatchError(
        f"state key {key!r}: the {type(value).__name__} {value!r} does not fit the module's 0-d "
        f"{str(dtype).removeprefix('torch.')} tensor")


def _exact(value: Any, out: torch.Tensor) -> bool:
    """Whether `out` holds `value` (an int exactly; a finite float or complex without overflowing)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return out.item() == value
    return bool(torch.isfinite(out).all()) or not cmath.isfinite(value)


def _cpu(tensor: torch.Tensor, copy: bool) -> torch.Tensor:
    """``tensor`` detached on the CPU; a copy if ``copy`` (moving off a device copies anyway)."""
    out = tensor.detach().cpu()
    return out.clone() if copy and out.data_ptr() == tensor.data_ptr() else out


def _stock_saving(module: nn.Module) -> bool:
    """Whether `state_dict` holds every parameter and persistent buffer as it is (no hook, no module that
    saves its own way): the tensors outside the state are then the non-persistent buffers."""
    if type(module).state_dict is not nn.Module.state_dict:
        return False
    return all(type(m)._save_to_state_dict is nn.Module._save_to_state_dict and not m._state_dict_hooks
               and not m._state_dict_pre_hooks for m in module.modules())


def stock_loading(module: nn.Module) -> bool:
    """Whether `load_state_dict` on `module` only copies each tensor in (no module loads its own way)."""
    if type(module).load_state_dict is not nn.Module.load_state_dict:
        return False
    for m in module.modules():
        if type(m)._load_from_state_dict is not nn.Module._load_from_state_dict:
            return False
        if m._load_state_dict_pre_hooks or m._load_state_dict_post_hooks:
            return False
    return True


def _takeable(own: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor],
              hidden: list[torch.Tensor] | None = None) -> set[str]:
    """The keys whose new tensor the module can hold as it is (see `restore_state`); ``hidden``: the
    module's tensors outside its state (non-persistent buffers): one viewing a key's old memory keeps
    that key copied into, so the view sees it."""
    old_ptr = {k: t.untyped_storage().data_ptr() for k, t in own.items() if t.numel()}
    new_ptr = {k: t.data_ptr() for k, t in tensors.items() if t.numel()}
    old_count, new_count = Counter(old_ptr.values()), Counter(new_ptr.values())
    old_count.update(t.untyped_storage().data_ptr() for t in hidden or () if t.numel())
    plain, tensor_type = (nn.Parameter, torch.Tensor), torch.Tensor
    out = set()
    for key, new in tensors.items():
        ptr = new_ptr.get(key)
        if ptr is None or ptr % ALIGNMENT or new_count[ptr] > 1:  # (empty, misaligned or shared)
            continue
        old = own[key]
        if type(new) is not tensor_type or type(old) not in plain or new.requires_grad or not new.is_cpu:
            continue
        if not new.is_contiguous() or old_count[old_ptr.get(key)] > 1 or not old.is_cpu:
            continue
        if old.untyped_storage().is_shared() or old.is_pinned():
            continue
        out.add(key)
    return out


def _refuse_misfit(key: str, tensor: torch.Tensor, target: torch.Tensor) -> None:
    if tuple(tensor.shape) != tuple(target.shape):
        raise StateMismatchError(
            f"state key {key!r}: shape {tuple(tensor.shape)} does not fit the module's {tuple(target.shape)}")
    raise StateMismatchError(
        f"state key {key!r}: dtype {str(tensor.dtype).removeprefix('torch.')} does "
        f"not fit the module's {str(target.dtype).removeprefix('torch.')}")


class TorchRLModule(nn.Module, RLModule):
    """An RLModule on torch: `forward()` is `forward_train()`, state is the state_dict."""

    framework: str = "torch"

    def __init__(self, *args, **kwargs) -> None:
        nn.Module.__init__(self)
        RLModule.__init__(self, *args, **kwargs)

    @OverrideToImplementCustomLogic
    @override(RLModule)
    def get_inference_action_dist_cls(self) -> type:
        """`self.action_dist_cls` if set, else TorchCategorical (Discrete) or TorchDiagGaussian (Box)."""
        own = getattr(self, "action_dist_cls", None)
        if own is not None:
            return own
        if isinstance(self.config.action_space, gym.spaces.Discrete):
            return TorchCategorical
        if isinstance(self.config.action_space, gym.spaces.Box):
            return TorchDiagGaussian
        raise ValueError(
            f"no default action distribution for action space {self.config.action_space!r}: "
            "set `self.action_dist_cls` in your RLModule's `setup()` or override "
            "get_inference_action_dist_cls, get_exploration_action_dist_cls and "
            "get_train_action_dist_cls")

    @OverrideToImplementCustomLogic
    @override(RLModule)
    def get_exploration_action_dist_cls(self) -> type:
        """As `get_inference_action_dist_cls` (RLlib 2.38's default)."""
        return self.get_inference_action_dist_cls()

    @OverrideToImplementCustomLogic
    @override(RLModule)
    def get_train_action_dist_cls(self) -> type:
        """As `get_inference_action_dist_cls` (RLlib 2.38's default)."""
        return self.get_inference_action_dist_cls()

    def forward(self, batch: dict, **kwargs) -> dict:
        """Calls `forward_train` (so `module(batch)` trains, as in RLlib)."""
        return self.forward_train(batch, **kwargs)

    @OverrideToImplementCustomLogic
    @override(RLModule)
    def get_state(self, components: Optional[Union[str, Collection[str]]] = None, *,
                  not_components: Optional[Union[str, Collection[str]]] = None,
                  inference_only: bool = False, **kwargs) -> StateDict:
        """The module's parameters and buffers as CPU tensors (inference-only keys if asked).

        The tensors are copies unless ``copy=False`` is passed: then CPU tensors are detached views
        of the module's own storage (what RLlib's numpy state is), which a caller that consumes them
        at once (a snapshot, a checkpoint) uses to avoid copying every byte before writing it.
        """
        copy = kwargs.get("copy", True)
        state_dict = self.state_dict(keep_vars=True)  # _cpu detaches each tensor once
        if inference_only and not self.config.inference_only:
            state_dict = self._inference_only_get_state_hook(state_dict)
        return {k: _cpu(v, copy) for k, v in state_dict.items()}

    def _checked_tensors(self, state: StateDict, own: Optional[StateDict] = None) -> dict[str, torch.Tensor]:
        if own is None:
            own = self.state_dict(keep_vars=True)  # only shapes and dtypes are read: no detached copies
        tensors = {}
        tensor_type = torch.Tensor
        for key, target in own.items():
            if key not in state:
                continue
            tensor = state[key]
            if type(tensor) is not tensor_type:
                tensor = _as_tensor(key, tensor, target)
            if tensor.shape != target.shape or tensor.dtype != target.dtype:
                _refuse_misfit(key, tensor, target)
            tensors[key] = tensor
        return tensors

    @override(RLModule)
    def check_state(self, state: StateDict) -> None:
        """Raises StateMismatchError if a tensor of `state` does not fit the module."""
        self._checked_tensors(state)

    @override(RLModule)
    def unknown_state_keys(self, state: StateDict) -> list[str]:
        """Tensor keys of `state` the module lacks, except those an inference-only module drops."""
        own = self.state_dict(keep_vars=True)  # only its keys are read
        unknown = {k: v for k, v in state.items() if k not in own
                   and isinstance(v, (torch.Tensor, np.ndarray, np.generic))}
        if unknown and self.config.inference_only:  # a learner's state: drop what the hook drops
            kept = self._inference_only_get_state_hook(dict(unknown))
            unknown = {k: v for k, v in unknown.items() if k in kept}
        return sorted(unknown)

    # buffers a checkpoint may lack: set from the model config, and RLlib before 2.40 had none
    OMISSIBLE_BUFFERS = frozenset({"log_std_clip_param_const"})

    @override(RLModule)
    def missing_state_keys(self, state: StateDict) -> list[str]:
        """The module's tensor keys `state` does not hold, but for `OMISSIBLE_BUFFERS`."""
        return sorted(k for k in self.state_dict(keep_vars=True)
                      if k not in state and k.rsplit(".", 1)[-1] not in self.OMISSIBLE_BUFFERS)

    @OverrideToImplementCustomLogic
    @override(RLModule)
    def set_state(self, state: StateDict) -> None:
        """Loads `state` exactly; refuses (changing nothing) a tensor of the wrong shape/dtype."""
        self.load_state_dict(self._checked_tensors(state), strict=False)

    @property
    def restore_state_checks(self) -> bool:
        """True unless a subclass has its own check_state, set_state or restore_state: the stock ones check
        every tensor (as check_state does) before they change anything."""
        cls = type(self)
        return (cls.restore_state is TorchRLModule.restore_state and cls.set_state is TorchRLModule.set_state
                and cls.check_state is TorchRLModule.check_state)

    @override(RLModule)
    def restore_state(self, state: StateDict) -> None:
        """`set_state` of a state `restore_from_path` read, taking its tensors instead of copying them.

        Its tensors are fresh, verified and held by nothing else (`Location.load_tensors`), so each
        parameter and buffer takes one as its data (``p.data = t``: the same `Parameter` objects, so an
        optimizer holding them goes on with them), where `load_state_dict` would copy every byte once
        more. Only when that is what `load_state_dict` would do: the stock `set_state`, no module of
        the tree with its own `_load_from_state_dict` or load hooks, and each pair a plain CPU tensor
        of the same dtype and shape, the new one contiguous, 64-byte aligned and not shared with another
        key, the old one neither in shared nor pinned memory nor sharing storage with another parameter
        or buffer (tied weights stay tied, a non-persistent buffer viewing a parameter sees it: they are
        copied into). Anything else is copied in, as `set_state` does. (A view of a parameter kept in a
        plain attribute is not looked for: it keeps the old bytes, as after ``p.data = t``.)
        """
        if type(self).set_state is not TorchRLModule.set_state or not stock_loading(self) or (
            torch.__future__.get_swap_module_params_on_conversion()  # loading swaps tensors: its way
        ):
            self.set_state(state)
            return
        own = self.state_dict(keep_vars=True)
        tensors = self._checked_tensors(state, own)
        hidden = [b for m in self.modules() for k, b in m._buffers.items()  # (not in the state: non-persistent)
                  if b is not None and k in m._non_persistent_buffers_set]
        takes = _takeable(own, tensors, hidden) if _stock_saving(self) else set()  # (else: copied, all of them)
        with torch.no_grad():
            for key, new in tensors.items():  # what the stock _load_from_state_dict does with each, without
                if key not in takes:  # walking the whole tree; first, as load_state_dict ran before
                    own[key].copy_(new)
            for key in takes:
                own[key].data = tensors[key]

    def _set_inference_only_state_dict_keys(self) -> None:
        """Hook: records which state_dict keys an inference-only module keeps (none here)."""
        self._inference_only_state_dict_keys = {}

    def _inference_only_get_state_hook(self, state_dict: StateDict) -> StateDict:
        """Hook: drops the keys an inference-only module does not have (none here)."""
        return state_dict
