"""One module reads configuration: every RLREG_* variable is read in storage/config.py and listed in
docs/configuration.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from storage import config

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("storage", "rlmodule", "registry", "rlreg", "migrations")
HOME = ROOT / "storage" / "config.py"


def _env_reads(path: Path):
    """(line, text) of each os.environ / os.getenv / envvar= use naming an RLREG_ variable."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        text = ast.unparse(node) if isinstance(node, (ast.Call, ast.Subscript, ast.keyword)) else ""
        reads_env = "environ" in text or "getenv" in text or (isinstance(node, ast.keyword) and node.arg == "envvar")
        if reads_env and re.search(r"RLREG_[A-Z_]+", text) and len(text) < 300:
            yield (node.lineno if hasattr(node, "lineno") else node.value.lineno), text


def test_rlreg_variables_are_read_only_by_storage_config():
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != HOME
        for line, text in _env_reads(path)
    ]
    assert not bad, "read RLREG_* through storage.config instead:\n" + "\n".join(bad)


def test_the_check_catches_a_direct_read(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('import os\nx = os.environ.get("RLREG_OFFLINE")\ny = os.environ["RLREG_HOME"]\n')
    assert sorted({line for line, _ in _env_reads(sample)}) == [2, 3]


def test_every_variable_named_in_the_code_is_in_the_table():
    named = {
        m
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        for m in re.findall(r"\bRLREG_[A-Z_]+[A-Z]\b", path.read_text())
    }
    assert named <= set(config.VARIABLES), f"add {sorted(named - set(config.VARIABLES))} to storage.config.VARIABLES"


def test_the_docs_page_lists_every_variable():
    page = (ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in config.VARIABLES if f"`{name}`" not in page]
    assert not missing, f"docs/configuration.md does not list {missing}"


@pytest.mark.parametrize("text, expected", [
    ("20GiB", 20 << 30), ("20G", 20 << 30), ("20GB", 20 * 10**9), ("512 MiB", 512 << 20), ("1048576", 1 << 20),
    ("1.5TiB", int(1.5 * (1 << 40))), ("10kb", 10_000),
])
def test_sizes_are_human(text, expected):
    assert config.parse_size(text) == expected


def test_a_bad_size_names_the_variable(monkeypatch):
    monkeypatch.setenv("RLREG_CACHE_MAX_BYTES", "twenty gigs")
    with pytest.raises(config.InvalidSettingError, match=r"RLREG_CACHE_MAX_BYTES='twenty gigs': .* is not a size"):
        config.cache_max_bytes()
    monkeypatch.setenv("RLREG_CACHE_MAX_BYTES", "20GB")
    assert config.cache_max_bytes() == 20 * 10**9


def test_durations():
    assert config.parse_duration("30d") == 30 * 86400
    assert config.parse_duration("90m") == 5400
    with pytest.raises(ValueError, match="is not a duration"):
        config.parse_duration("30 days")
