"""The layering rule, read from the imports: storage ← rlmodule ← registry ← rlreg."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "storage": {"rlmodule", "registry", "rlreg", "migrations"},
    "rlmodule": {"registry", "rlreg", "migrations", "fsspec", "sqlalchemy", "s3fs", "alembic"},
    "registry": {"rlreg"},
}
NEVER = {"pickle", "cloudpickle", "dill", "marshal", "shelve"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def _package_files():
    for package in ("storage", "rlmodule", "registry", "rlreg", "migrations"):
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_layers_below(package):
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for pkg, path in _package_files()
        if pkg == package
        for line, name in _imports(path)
        if name.split(".")[0] in FORBIDDEN[package]
    ]
    assert not bad, "layering broken:\n" + "\n".join(bad)


# The one module that writes pickles (of plain data, for RLlib to read); it never loads one.
PICKLE_WRITER = ROOT / "rlmodule" / "rllib_writer.py"
UNPICKLING = {"load", "loads", "Unpickler", "_Unpickler", "_load", "_loads", "find_class"}


def test_no_pickle_anywhere_a_model_is_saved_or_loaded():
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for _, path in _package_files()
        for line, name in _imports(path)
        if name.split(".")[0] in NEVER and not (path == PICKLE_WRITER and name == "pickle")
    ]
    assert not bad, "pickle-like modules imported:\n" + "\n".join(bad)


def _unpickling(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute) and node.attr in UNPICKLING and isinstance(
                node.value, ast.Name) and node.value.id in NEVER:
            yield node.lineno, f"{node.value.id}.{node.attr}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in NEVER:
            yield node.lineno, f"from {node.module} import ..."


def test_the_pickle_writer_never_unpickles(tmp_path):
    bad = [f"{path.relative_to(ROOT)}:{line} uses {what}"
           for _, path in _package_files() for line, what in _unpickling(path)]
    assert not bad, "unpickling:\n" + "\n".join(bad)
    control = tmp_path / "control.py"  # the check can fail
    control.write_text("import pickle\nfrom pickle import Unpickler\n\npickle.loads(b'')\n")
    assert sorted(_unpickling(control)) == [(2, "from pickle import ..."), (4, "pickle.loads")]
