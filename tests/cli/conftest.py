"""Fixtures for the command line tests: the real ``rlreg`` console script run in a subprocess."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest
from clihelpers import RLREG, InProcess, Result, Runner


@pytest.fixture
def rlreg(tmp_path) -> Runner:
    """A runner on a fresh, empty embedded registry (SQLite file + local folder)."""
    assert RLREG, f"the rlreg console script is not installed next to {sys.executable}"
    home = tmp_path / "home"
    home.mkdir()
    return Runner(home, {"RLREG_CACHE_DIR": str(tmp_path / "cache")})


@pytest.fixture
def home_registry(rlreg):
    """A ``registry.Registry`` in this process on the same embedded registry as ``rlreg``."""
    from registry import Registry

    reg = Registry(f"sqlite:///{rlreg.home / 'rlreg.db'}", str(rlreg.home / "blobs"))
    yield reg
    reg.close()


@dataclass
class DemoRuns:
    """A home where ``rlreg demo`` ran twice: the runner and both runs' results."""

    rlreg: Runner
    first: Result
    second: Result


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory) -> DemoRuns:
    """``rlreg demo`` (defaults, for people) then ``rlreg demo --json`` (shorter), on one home."""
    assert RLREG, f"the rlreg console script is not installed next to {sys.executable}"
    base = tmp_path_factory.mktemp("demo")
    home = base / "home"
    home.mkdir()
    runner = Runner(home, {"RLREG_CACHE_DIR": str(base / "cache")})
    first = runner("demo", "--seed", "1")
    second = runner("demo", "--json", "--iterations", "8", "--seed", "2")
    return DemoRuns(runner, first, second)


@pytest.fixture(scope="session")
def demo_inproc(demo_runs) -> InProcess:
    """In-process ``rlreg`` on the demo's home."""
    return InProcess(demo_runs.rlreg)


@pytest.fixture
def inproc(rlreg) -> InProcess:
    """In-process ``rlreg`` on the same fresh home as ``rlreg``."""
    return InProcess(rlreg)
