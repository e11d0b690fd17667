"""RLlib's API annotation decorators: markers only, except `override` which checks its claim."""

from __future__ import annotations

import inspect


def override(parent_cls):
    """Marks a method as overriding one of `parent_cls`; raises NameError if it overrides none."""
    if not inspect.isclass(parent_cls):
        raise NotImplementedError(
            f"`@override` expects a class as argument, got {parent_cls!r}; "
            "write `@override(ParentClass)`."
        )

    def decorator(method):
        if method.__name__ not in dir(parent_cls):
            raise NameError(f"{method} does not override any method of {parent_cls}")
        return method

    return decorator


def OverrideToImplementCustomLogic(obj):
    """Marks a method that users override to implement their own logic."""
    obj.__is_overridden__ = False
    return obj


def OverrideToImplementCustomLogic_CallToSuperRecommended(obj):
    """Like OverrideToImplementCustomLogic; overrides should call super()."""
    obj.__is_overridden__ = False
    return obj


def is_overridden(obj) -> bool:
    """True if `obj` (a bound method) no longer carries the not-overridden marker."""
    return not getattr(obj, "__is_overridden__", True) is False


def _marker(*args, **kwargs):
    """Decorator usable bare (`@PublicAPI`) or called (`@PublicAPI(stability=...)`)."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return args[0]
    return lambda obj: obj


PublicAPI = _marker
DeveloperAPI = _marker
ExperimentalAPI = _marker
OldAPIStack = _marker
