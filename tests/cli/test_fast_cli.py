"""Read commands never import torch: each runs in a fresh interpreter that then reports sys.modules.

The test process itself has torch, so each check is a subprocess. ``rlreg.cli.READ_COMMANDS`` is the
one list: a command added later is either in it or in ``TORCH_COMMANDS`` (checked below).
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from clihelpers import small_module

from rlreg.cli import READ_COMMANDS, TORCH_COMMANDS, cli

PROBE = """
import json, sys
from rlreg.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="rlreg")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": sorted(m for m in ("torch", "numpy", "rlmodule.rl_module", "storage.tensors")
                                                if m in sys.modules)}), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A home whose registry holds ``walk`` 1 and 2, ``best`` on 1."""
    from registry import Registry

    home = tmp_path_factory.mktemp("fast")
    with Registry(f"sqlite:///{home / 'rlreg.db'}", str(home / "blobs")) as reg:
        reg.snapshot("walk", small_module(1))
        reg.snapshot("walk", small_module(2))
        reg.set_alias("walk", "best", 1)
    return home


def run_probe(home, args: list[str]) -> dict:
    env = {"RLREG_HOME": str(home), "RLREG_CACHE_DIR": str(home / "cache"), "PATH": "/usr/bin:/bin",
           **{k: v for k, v in __import__("os").environ.items() if k in ("PYTHONPATH", "HOME")}}
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True,
                          timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1]) | {"err": done.stderr}


@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_a_read_command_does_not_import_torch(home, command):
    got = run_probe(home, [part.format(name="walk") for part in command])
    assert got["code"] == 0, got["err"]
    assert got["heavy"] == [], f"rlreg {' '.join(command)} imported {got['heavy']}"


def test_the_probe_sees_torch_when_a_command_loads_a_module(home, tmp_path):
    got = run_probe(home, ["export", "walk:1", str(tmp_path / "out")])  # the control: a torch command
    assert got["code"] == 0, got["err"]
    assert "torch" in got["heavy"]


def _commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}"


def _path(args: tuple[str, ...]) -> str:
    """The command path an argument list names: ``("alias", "set", "walk", ...)`` -> ``"alias set"``."""
    command, parts = cli, []
    for arg in args:
        if not isinstance(command, click.Group) or arg not in command.commands:
            break
        command = command.commands[arg]
        parts.append(arg)
    return " ".join(parts)


def test_every_command_is_listed_as_read_or_torch():
    read = {_path(c) for c in READ_COMMANDS}
    assert "" not in read, "a READ_COMMANDS entry names no command"
    unlisted = set(_commands(cli)) - read - TORCH_COMMANDS
    assert not unlisted, f"add {sorted(unlisted)} to READ_COMMANDS or TORCH_COMMANDS in rlreg/cli.py"


def test_shell_completion_as_documented(home):
    import os

    env = {**os.environ, "COMP_WORDS": "rlreg ca", "COMP_CWORD": "1", "_RLREG_COMPLETE": "bash_complete"}
    done = subprocess.run([sys.executable, "-m", "rlreg"], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["plain,cache"], done.stderr
