"""RLlib's deprecation helpers: `Deprecated(..., error=True)` raises ValueError on use."""

from __future__ import annotations

import functools
import inspect
import warnings

DEPRECATED_VALUE = -1


def deprecation_warning(old: str, new: str | None = None, *, help: str | None = None,
                        error: bool | type | None = None) -> None:
    """Warns (or raises, if `error`) that `old` is deprecated, naming `new` or `help`."""
    msg = f"`{old}` has been deprecated."
    if new:
        msg += f" Use `{new}` instead."
    if help:
        msg += f" {help}"
    if error:
        if inspect.isclass(error) and issubclass(error, Exception):
            raise error(msg)
        raise ValueError(msg)
    warnings.warn(msg, DeprecationWarning, stacklevel=3)


def Deprecated(old: str | None = None, *, new: str | None = None, help: str | None = None,
               error: bool = False):
    """Decorator for deprecated functions and classes; with `error=True` every use raises."""

    def decorator(obj):
        name = old or obj.__name__
        if inspect.isclass(obj):
            original_init = obj.__init__

            @functools.wraps(original_init)
            def patched_init(*args, **kwargs):
                deprecation_warning(old=name, new=new, help=help, error=error)
                return original_init(*args, **kwargs)

            obj.__init__ = patched_init
            return obj

        @functools.wraps(obj)
        def patched(*args, **kwargs):
            deprecation_warning(old=name, new=new, help=help, error=error)
            return obj(*args, **kwargs)

        return patched

    return decorator
