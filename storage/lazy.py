"""Names of a package imported on first use (PEP 562), so that a light submodule does not pull in torch.

Used by ``storage`` and ``rlmodule``: the command line's read commands import their error modules
and nothing heavier.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def exports(package: str, names: Mapping[str, str], submodules: Iterable[str] = ()
            ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for ``package``.

    ``names`` maps a submodule to the space-separated names it gives the package; ``submodules``
    are imported when read as attributes. A name is imported once, then is a plain attribute.
    """
    where = {name: module for module, spaced in names.items() for name in spaced.split()}
    lazy_modules = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        if name in lazy_modules:
            return importlib.import_module(f"{package}.{name}")
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later reads are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted({*where, *lazy_modules})  # the public names (not the package's own imports)

    return sorted(where), __getattr__, __dir__
