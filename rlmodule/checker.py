"""RLlib's spec checking: canonical specs, `SpecDict`/`TypeSpec`, and the forward decorators.

Semantics follow RLlib 2.35's `core/models/specs/checker.py` and `specs_dict.py` (messages
included). One difference: nested specs built from tuple keys are checked recursively (RLlib
refuses a plain nested dict as a leaf spec).
"""

from __future__ import annotations

import functools
import logging
from collections import abc
from typing import Any, List, Tuple, Union

import tree

from rlmodule.errors import SpecCheckingError

logger = logging.getLogger(__name__)

NestedKeys = List[Union[str, Tuple[str, ...]]]
SpecType = Union[NestedKeys]

_MISSING_KEYS_FROM_DATA = (
    "The data dict does not match the model specs. Keys {} are "
    "in the spec dict but not on the data dict. Data keys are {}"
)
_TYPE_MISMATCH = (
    "The data does not match the spec. The data element "
    "{} has type {} (expected type {})."
)

__all__ = [
    "SpecType", "NestedKeys", "Spec", "TypeSpec", "SpecDict", "SpecCheckingError",
    "convert_to_canonical_format", "check_input_specs", "check_output_specs",
    "is_input_decorated", "is_output_decorated",
]


class Spec:
    """Base of the specs: `validate(data)` raises ValueError on a mismatch."""

    def validate(self, data: Any) -> None:
        """Raises ValueError if `data` does not match this spec."""
        raise NotImplementedError


class TypeSpec(Spec):
    """A spec that data is an instance of `dtype` (a type or tuple of types)."""

    def __init__(self, dtype) -> None:
        self.dtype = dtype

    def validate(self, data: Any) -> None:
        """Raises ValueError unless `data` is an instance of the spec's type."""
        if not isinstance(data, self.dtype):
            raise ValueError(f"Expected data type {self.dtype} but found {type(data)}")

    def __eq__(self, other) -> bool:
        return isinstance(other, TypeSpec) and self.dtype == other.dtype

    def __repr__(self) -> str:
        return f"TypeSpec({self.dtype!r})"


def _force_tuple(path) -> tuple:
    return tuple(path) if isinstance(path, (list, tuple)) else (path,)


class SpecDict(dict, Spec):
    """A (nested) dict of specs; data must hold at least its keys, leaves are checked."""

    def validate(self, data, exact_match: bool = False) -> None:
        """Raises ValueError if `data` lacks a key of the spec or a leaf does not match."""
        ok, missing = self.is_subset(data, self)
        if not ok:
            data_keys = set()
            tree.map_structure_with_path(lambda p, _: data_keys.add(_force_tuple(p)), data)
            raise ValueError(_MISSING_KEYS_FROM_DATA.format(missing, data_keys))
        if exact_match:
            tree.assert_same_structure(data, self, check_types=False)
        for name, spec in self.items():
            value = data[name]
            if spec is None:
                continue
            if isinstance(spec, Spec):
                try:
                    spec.validate(value)
                except ValueError as e:
                    raise ValueError(
                        f"Mismatch found in data element {name}, which is a TensorSpec: {e}"
                    ) from None
            elif isinstance(spec, abc.Mapping):
                SpecDict(spec).validate(value)
            elif isinstance(spec, (type, tuple)):
                if not isinstance(value, spec):
                    raise ValueError(_TYPE_MISMATCH.format(
                        name, type(value).__name__, getattr(spec, "__name__", spec)))
            else:
                raise ValueError(
                    f"The spec type has to be either TensorSpec or Type. got {type(spec)}")

    @staticmethod
    def is_subset(a, b):
        """(True, None) if every key path of `b` exists in `a`, else (False, first missing)."""
        for key in b:
            if key not in a:
                return False, key
            if isinstance(a[key], dict):
                if b[key] is None:
                    continue
                if not isinstance(b[key], dict):
                    return False, key
                res = SpecDict.is_subset(a[key], b[key])
                if not res[0]:
                    return res
            elif isinstance(b[key], dict):
                return False, key
        return True, None

    def __repr__(self) -> str:
        return f"SpecDict({self.keys()!r})"


def _nested(keys: tuple) -> dict:
    out = current = {}
    for key in keys[:-1]:
        current[key] = {}
        current = current[key]
    current[keys[-1]] = None
    return out


def convert_to_canonical_format(spec):
    """A list of (nested) keys or a mapping becomes a SpecDict; a type becomes a TypeSpec."""
    if isinstance(spec, list):
        spec_dict = {}
        for k in spec:
            if not isinstance(k, tuple):
                spec_dict[k] = None
            elif len(k) == 1:
                spec_dict[k[0]] = None
            else:
                spec_dict[k[0]] = _nested(k[1:])
        return SpecDict(spec_dict)
    if isinstance(spec, abc.Mapping):
        spec = SpecDict(spec)
        for key in spec:
            if isinstance(spec[key], (type, tuple)):
                spec[key] = TypeSpec(spec[key])
            elif isinstance(spec[key], list):
                spec[key] = convert_to_canonical_format(spec[key])
        return spec
    if isinstance(spec, type):
        return TypeSpec(spec)
    return spec


def _validate(*, cls_instance, method, data, spec, tag: str):
    if isinstance(spec, SpecDict) and not isinstance(data, abc.Mapping):
        raise ValueError(f"{tag} must be a Mapping, got {type(data).__name__}")
    cache = getattr(cls_instance, f"__checked_{tag}_specs_cache__", None)
    if cache is None or method.__name__ not in cache:
        try:
            spec.validate(data)
        except ValueError as e:
            raise SpecCheckingError(
                f"{tag} spec validation failed on "
                f"{cls_instance.__class__.__name__}.{method.__name__}, {e}."
            ) from None
    return data


def _get_spec(obj, attr: str, error_cls):
    if not hasattr(obj, attr):
        raise error_cls(f"object {obj} has no attribute {attr}.")
    return getattr(obj, attr)


def check_input_specs(input_specs: str, *, only_check_on_retry: bool = True, cache: bool = True):
    """Decorator validating a method's input against `getattr(self, input_specs)`.

    With `only_check_on_retry` the method runs first and the specs are checked only if it
    raises: a mismatch then raises SpecCheckingError, otherwise the original error is re-raised.
    """

    def decorator(func):
        @functools.wraps(func)
        def wrapper(self, input_data, **kwargs):
            if cache and not hasattr(self, "__checked_input_specs_cache__"):
                self.__checked_input_specs_cache__ = {}
            initial_exception = None
            if only_check_on_retry:
                try:
                    return func(self, input_data, **kwargs)
                except SpecCheckingError:
                    raise
                except Exception as e:
                    initial_exception = e
                    logger.debug("%s raised %r; checking its input specs", func.__name__, e)
            if input_specs and (initial_exception or not cache
                                or func.__name__ not in self.__checked_input_specs_cache__):
                spec = _get_spec(self, input_specs, SpecCheckingError)
                if spec is not None:
                    _validate(cls_instance=self, method=func, data=input_data,
                              spec=convert_to_canonical_format(spec), tag="input")
            if initial_exception is not None:
                raise initial_exception
            if cache:
                self.__checked_input_specs_cache__[func.__name__] = True
            return func(self, input_data, **kwargs)

        wrapper.__checked_input_specs__ = True
        return wrapper

    return decorator


def check_output_specs(output_specs: str, *, cache: bool = True):
    """Decorator validating a method's output against `getattr(self, output_specs)` (once)."""

    def decorator(func):
        @functools.wraps(func)
        def wrapper(self, input_data, **kwargs):
            if cache and not hasattr(self, "__checked_output_specs_cache__"):
                self.__checked_output_specs_cache__ = {}
            output_data = func(self, input_data, **kwargs)
            if output_specs and (not cache
                                 or func.__name__ not in self.__checked_output_specs_cache__):
                spec = _get_spec(self, output_specs, ValueError)
                if spec is not None:
                    _validate(cls_instance=self, method=func, data=output_data,
                              spec=convert_to_canonical_format(spec), tag="output")
            if cache:
                self.__checked_output_specs_cache__[func.__name__] = True
            return output_data

        wrapper.__checked_output_specs__ = True
        return wrapper

    return decorator


def is_input_decorated(obj) -> bool:
    """True if `obj` is wrapped by `check_input_specs`."""
    return hasattr(obj, "__checked_input_specs__")


def is_output_decorated(obj) -> bool:
    """True if `obj` is wrapped by `check_output_specs`."""
    return hasattr(obj, "__checked_output_specs__")
