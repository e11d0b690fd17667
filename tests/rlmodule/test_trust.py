"""The trusted-class rule of `resolve_class`."""

from __future__ import annotations

import sys
import textwrap

import pytest

from rlmodule import RLModule, TorchRLModule, UntrustedClassError, resolve_class
from rlmodule.multi_rl_module import MultiRLModule


@pytest.fixture
def foreign_package(tmp_path, monkeypatch):
    """An importable but not yet imported package `rlreg_foreign_pkg` with one RLModule."""
    pkg = tmp_path / "rlreg_foreign_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mods.py").write_text(textwrap.dedent("""
        from rlmodule import RLModule
        IMPORTED = True
        class Foreign(RLModule):
            class Inner(RLModule):
                pass
        def not_a_class():
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "rlreg_foreign_pkg"
    for name in [n for n in sys.modules if n.startswith("rlreg_foreign_pkg")]:
        del sys.modules[name]


def test_rlmodule_classes_are_always_trusted():
    assert resolve_class("rlmodule.torch_rl_module.TorchRLModule", RLModule) is TorchRLModule


def test_unimported_module_is_refused_without_importing(foreign_package):
    with pytest.raises(UntrustedClassError) as e:
        resolve_class("rlreg_foreign_pkg.mods.Foreign", RLModule)
    assert str(e.value) == (
        "class 'rlreg_foreign_pkg.mods.Foreign' is not trusted: module 'rlreg_foreign_pkg.mods' "
        "is not imported and matches no trusted prefix; to trust it, import "
        "rlreg_foreign_pkg.mods before loading, set RLREG_TRUSTED_MODULES=rlreg_foreign_pkg or "
        "pass trusted_modules=['rlreg_foreign_pkg']")
    assert "rlreg_foreign_pkg.mods" not in sys.modules


def test_trusted_modules_argument(foreign_package):
    cls = resolve_class("rlreg_foreign_pkg.mods.Foreign", RLModule, trusted_modules=["rlreg_foreign_pkg"])
    assert cls.__name__ == "Foreign"


def test_env_variable_prefixes(foreign_package, monkeypatch):
    monkeypatch.setenv("RLREG_TRUSTED_MODULES", "other, rlreg_foreign_pkg.mods")
    assert resolve_class("rlreg_foreign_pkg.mods.Foreign.Inner", RLModule).__name__ == "Inner"


def test_prefix_matches_whole_module_names_only(foreign_package):
    with pytest.raises(UntrustedClassError, match="is not trusted"):
        resolve_class("rlreg_foreign_pkg.mods.Foreign", RLModule, trusted_modules=["rlreg_foreign"])


def test_already_imported_module_is_trusted(foreign_package):
    __import__("rlreg_foreign_pkg.mods")
    assert resolve_class("rlreg_foreign_pkg.mods.Foreign", RLModule).__name__ == "Foreign"


@pytest.mark.parametrize("path,base,message", [
    ("rlreg_foreign_pkg.mods.not_a_class", object,
     "'rlreg_foreign_pkg.mods.not_a_class' is not a class (it is a function)"),
    ("rlreg_foreign_pkg.mods.Foreign", MultiRLModule,
     "class 'rlreg_foreign_pkg.mods.Foreign' is not a subclass of rlmodule.multi_rl_module.MultiRLModule"),
    ("rlreg_foreign_pkg.nomod.X", object,
     "class 'rlreg_foreign_pkg.nomod.X' cannot be loaded: 'rlreg_foreign_pkg' has no attribute 'nomod'"),
    ("rlmodule.nothing.X", object,
     "class 'rlmodule.nothing.X' cannot be loaded: 'rlmodule' has no attribute 'nothing'"),
    ("tests.x.<locals>.Cls", object, "is defined inside a function and cannot be loaded by name"),
    ("Cls", object, "class path 'Cls' is not a dotted 'package.module.Class' name"),
    (None, object, "class path None is not a dotted"),
])
def test_refusals_name_the_class(foreign_package, path, base, message):
    with pytest.raises(UntrustedClassError) as e:
        resolve_class(path, base, trusted_modules=["rlreg_foreign_pkg"])
    assert message in str(e.value)


def test_trusted_module_that_fails_to_import(tmp_path, monkeypatch):
    pkg = tmp_path / "rlreg_broken_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UntrustedClassError,
                       match="importing module 'rlreg_broken_pkg' raised RuntimeError: boom"):
        resolve_class("rlreg_broken_pkg.Cls", object, trusted_modules="rlreg_broken_pkg")


@pytest.fixture
def lazy_package(tmp_path, monkeypatch):
    """An imported package `rlreg_lazy_pkg` whose module `__getattr__` imports submodules."""
    pkg = tmp_path / "rlreg_lazy_pkg"
    pkg.mkdir()
    marker = tmp_path / "sub-was-imported"
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        import importlib
        def __getattr__(name):
            return importlib.import_module(f"{__name__}.{name}")
    """))
    (pkg / "sub.py").write_text(textwrap.dedent(f"""
        open({str(marker)!r}, "w").close()
        class Foo:
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("rlreg_lazy_pkg")
    yield marker
    for name in [n for n in sys.modules if n.startswith("rlreg_lazy_pkg")]:
        del sys.modules[name]


@pytest.mark.parametrize("path,message", [
    ("rlreg_lazy_pkg.sub.Foo", "class 'rlreg_lazy_pkg.sub.Foo' is not trusted: module "
                               "'rlreg_lazy_pkg.sub' is not imported"),
    ("rlreg_lazy_pkg.sub", "class 'rlreg_lazy_pkg.sub' cannot be loaded: 'rlreg_lazy_pkg' has no "
                           "attribute 'sub' (names served by a module __getattr__ are not loaded)"),
])
def test_lazy_package_getattr_never_imports_a_submodule(lazy_package, path, message):
    with pytest.raises(UntrustedClassError) as e:
        resolve_class(path, object)
    assert message in str(e.value)
    assert "rlreg_lazy_pkg.sub" not in sys.modules
    assert not lazy_package.exists()


@pytest.mark.parametrize("path,submodule", [
    ("numpy.f2py.Foo", "numpy.f2py"),
    ("torch._dynamo.Foo", "torch._dynamo"),
])
def test_refusal_leaves_lazy_library_submodules_unimported(path, submodule):
    if submodule in sys.modules:
        pytest.skip(f"{submodule} is already imported in this test process")
    with pytest.raises(UntrustedClassError, match=f"module {submodule!r} is not imported"):
        resolve_class(path, object)
    assert submodule not in sys.modules


def test_nested_class_resolves_from_class_dicts(foreign_package):
    inner = resolve_class("rlreg_foreign_pkg.mods.Foreign.Inner", RLModule,
                          trusted_modules=["rlreg_foreign_pkg"])
    assert inner.__qualname__ == "Foreign.Inner"


def test_tuple_base_names_every_allowed_base(foreign_package):
    with pytest.raises(UntrustedClassError,
                       match="is not a subclass of any of rlmodule.multi_rl_module.MultiRLModule, "
                             "builtins.int"):
        resolve_class("rlreg_foreign_pkg.mods.Foreign", (MultiRLModule, int),
                      trusted_modules=["rlreg_foreign_pkg"])
