"""The trusted-class rule: which class paths a checkpoint or spec dict may name.

A path `pkg.mod.Cls` resolves only if (a) its module is already imported in this process, or
(b) the module matches a prefix in the `RLREG_TRUSTED_MODULES` environment variable
(comma-separated, read at call time) or in `trusted_modules=`, or (c) it lives inside `rlmodule`.
The object found must be a class and a subclass of `base`. Everything else raises
`UntrustedClassError` naming the class and how to trust it; no `ImportError` escapes.
Nested qualnames (`pkg.mod.Outer.Inner`) resolve; classes defined inside functions cannot.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Iterable

from rlmodule.errors import UntrustedClassError
from storage import config

TRUSTED_MODULES_ENV = "RLREG_TRUSTED_MODULES"
ALWAYS_TRUSTED = ("rlmodule",)
_PATH_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def trusted_prefixes(trusted_modules: Iterable[str] | str | None = None) -> tuple[str, ...]:
    """The module prefixes trusted now: rlmodule, the env variable and `trusted_modules`."""
    if isinstance(trusted_modules, str):
        trusted_modules = trusted_modules.split(",")
    env = config.trusted_modules()
    extra = [p.strip() for p in [*env, *(trusted_modules or ())] if p and p.strip()]
    return (*ALWAYS_TRUSTED, *extra)


def is_trusted_module(module: str, trusted_modules=None) -> bool:
    """True if `module` is imported already or matches a trusted prefix."""
    return module in sys.modules or any(
        module == p or module.startswith(p.rstrip(".") + ".") for p in trusted_prefixes(trusted_modules)
    )


def _how_to_trust(path: str, module: str) -> str:
    top = module.split(".")[0]
    return (
        f"import {module} before loading, set {TRUSTED_MODULES_ENV}={top} "
        f"or pass trusted_modules=[{top!r}]"
    )


def _untrusted(path: str, module: str) -> UntrustedClassError:
    return UntrustedClassError(
        f"class {path!r} is not trusted: module {module!r} is not imported and matches no "
        f"trusted prefix; to trust it, {_how_to_trust(path, module)}"
    )


def _import_module(path: str, parts: list[str], trusted_modules):
    """The longest loadable module prefix of `parts`, the remaining names, a skipped module."""
    skipped = None
    for i in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:i])
        if name in sys.modules:
            return sys.modules[name], parts[i:], skipped
        if not is_trusted_module(name, trusted_modules):
            skipped = skipped or name
            continue
        try:
            return importlib.import_module(name), parts[i:], skipped
        except ModuleNotFoundError as e:
            if e.name is not None and e.name != name and not name.startswith(e.name + "."):
                raise UntrustedClassError(
                    f"class {path!r} cannot be loaded: importing module {name!r} failed ({e})"
                ) from None
        except Exception as e:  # a trusted module that fails to import
            raise UntrustedClassError(
                f"class {path!r} cannot be loaded: importing module {name!r} raised "
                f"{type(e).__name__}: {e}"
            ) from None
    if skipped is not None:
        raise _untrusted(path, skipped)
    raise UntrustedClassError(
        f"class {path!r} cannot be loaded: no module {'.'.join(parts[:-1])!r} found"
    )


def _base_names(base) -> str:
    bases = base if isinstance(base, tuple) else (base,)
    names = [f"{b.__module__}.{b.__qualname__}" for b in bases]
    return names[0] if len(names) == 1 else "any of " + ", ".join(names)


def _static_attr(obj, attr: str):
    """`obj.attr` read from `__dict__`s only: no module `__getattr__`, no descriptors run."""
    if inspect.isclass(obj):
        for klass in inspect.getmro(obj):
            if attr in vars(klass):
                return vars(klass)[attr]
        raise AttributeError(attr)
    try:
        return vars(obj)[attr]
    except (KeyError, TypeError):
        raise AttributeError(attr) from None


def resolve_class(path: str, base: type | tuple[type, ...] = object, trusted_modules=None) -> type:
    """The class named by `path`, if the trusted-class rule allows it and it subclasses `base`.

    `base` may be a tuple of classes (any of them). Names are looked up in `__dict__`s only,
    so a lazy package `__getattr__` never imports a submodule on our behalf.
    """
    if not isinstance(path, str) or not _PATH_RE.match(path):
        if isinstance(path, str) and "<locals>" in path:
            raise UntrustedClassError(
                f"class {path!r} is defined inside a function and cannot be loaded by name; "
                "define it at module level"
            )
        raise UntrustedClassError(
            f"class path {path!r} is not a dotted 'package.module.Class' name"
        )
    parts = path.split(".")
    module, attrs, skipped = _import_module(path, parts, trusted_modules)
    obj = module
    for attr in attrs:
        try:
            obj = _static_attr(obj, attr)
        except AttributeError:
            if skipped is not None:
                raise _untrusted(path, skipped) from None
            lazy = " (names served by a module __getattr__ are not loaded)" if (
                inspect.ismodule(obj) and "__getattr__" in vars(obj)) else ""
            raise UntrustedClassError(
                f"class {path!r} cannot be loaded: {obj.__name__!r} has no attribute {attr!r}{lazy}"
            ) from None
    if not inspect.isclass(obj):
        raise UntrustedClassError(
            f"{path!r} is not a class (it is a {type(obj).__name__}); only classes are loaded"
        )
    if not issubclass(obj, base):
        raise UntrustedClassError(f"class {path!r} is not a subclass of {_base_names(base)}")
    return obj
