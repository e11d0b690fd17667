"""Helpers of the command line tests: run the real ``rlreg`` console script, parse what it prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
RLREG = shutil.which("rlreg", path=str(BIN)) or shutil.which("rlreg")


@dataclass
class Result:
    """What one ``rlreg`` run printed and returned."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self):
        """stdout parsed as one JSON document."""
        return json.loads(self.out)

    def json_lines(self):
        """stdout parsed as JSON lines."""
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


class Runner:
    """Runs ``rlreg ARGS`` with an isolated RLREG_HOME (and optional --db/--storage env vars)."""

    def __init__(self, home: Path, env: dict[str, str] | None = None):
        self.home = home
        base = {k: v for k, v in os.environ.items() if k not in ("RLREG_DB_URL", "RLREG_STORAGE_URL")}
        self.env = {**base, "RLREG_HOME": str(home), **(env or {})}

    def __call__(self, *args: str, code: int = 0, timeout: float = 120) -> Result:
        """Run and check the exit code (``code=None`` skips the check)."""
        proc = subprocess.run(
            [RLREG, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.home
        )
        result = Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)
        if code is not None:
            assert proc.returncode == code, (
                f"rlreg {' '.join(args)} exited {proc.returncode}, expected {code}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return result

    def popen(self, *args: str) -> subprocess.Popen:
        """Start ``rlreg ARGS`` in the background (stdout and stderr piped, text mode)."""
        return subprocess.Popen(
            [RLREG, *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=self.home,
        )


def small_module(seed: int = 0, hidden: int = 8):
    """A small PPO CartPole module with deterministic weights."""
    import gymnasium as gym
    import torch

    from rlmodule import RLModuleSpec
    from rlmodule.ppo import PPOCatalog, PPOTorchRLModule

    env = gym.make("CartPole-v1")
    torch.manual_seed(seed)
    return RLModuleSpec(
        module_class=PPOTorchRLModule,
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config_dict={"hidden": [hidden]},
        catalog_class=PPOCatalog,
    ).build()


class InProcess:
    """Runs the same ``rlreg`` command group in this process (Click's CliRunner): for the tables,
    where a subprocess per view would only re-pay torch's import. The entry point itself is
    exercised by the subprocess tests."""

    def __init__(self, runner: Runner):
        self.env = {"RLREG_HOME": str(runner.home), "RLREG_DB_URL": None, "RLREG_STORAGE_URL": None,
                    "RLREG_CACHE_DIR": runner.env.get("RLREG_CACHE_DIR")}

    def __call__(self, *args: str, code: int | None = 0) -> Result:
        """Run and check the exit code (``code=None`` skips the check)."""
        from click.testing import CliRunner

        from rlreg.cli import cli

        got = CliRunner().invoke(cli, list(args), env=self.env, prog_name="rlreg")
        if got.exception is not None and not isinstance(got.exception, SystemExit):
            raise got.exception
        result = Result(tuple(args), got.exit_code, got.stdout, got.stderr)
        shown = f"rlreg {' '.join(args)} exited {result.code}\n{result.out}\n{result.err}"
        assert code is None or result.code == code, shown
        return result


def assert_error(result, code: int, *fragments: str) -> None:
    """Exit ``code``, exactly one stderr line naming every fragment: ``rlreg: ...``, or with ``--json``
    one JSON object ``{"error", "exit_code", "message"}``."""
    assert result.code == code, f"exit {result.code}, expected {code}: {result.err}"
    lines = result.err.strip().splitlines()
    if "--json" in result.args:
        assert len(lines) == 1, result.err
        error = json.loads(lines[0])
        assert error["exit_code"] == code and error["error"], error
        lines = [error["message"]]
    else:
        assert len(lines) == 1 and lines[0].startswith("rlreg: "), result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
