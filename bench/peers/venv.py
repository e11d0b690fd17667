"""Runs the peers that live in their own venv (RLlib, MLflow) in a subprocess and collects their rows.

RLlib and MLflow pin versions that clash with rlreg's `.venv` (ray[rllib] pins gymnasium==1.2.2), so
`bench/peers/setup.sh` installs them into `.venv-peers` and each peer times itself inside that
interpreter. A peer that is not installed, or fails, gives one row saying why it was skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.peers.peerlib import NOT_INSTALLED

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SETUP = "bash bench/peers/setup.sh"
PEERS = {
    # name: (script, its snapshot systems (the first's rows also repeat snapshots), its load systems)
    "rllib": ("rllib_peer.py", ("RLlib save_to_path", "RLlib save_to_path + fsync"),
              ("RLlib build + restore_from_path", "RLlib RLModule.from_checkpoint")),
    "mlflow": ("mlflow_peer.py", ("MLflow log_model + register",), ("MLflow load_model",)),
}


def peers_python() -> Path:
    """The peers' venv interpreter: $RLREG_PEERS_VENV or .venv-peers at the repository root."""
    venv = Path(os.environ.get("RLREG_PEERS_VENV", ROOT / ".venv-peers"))
    if not venv.is_absolute():
        venv = ROOT / venv
    return venv / "bin" / "python"


def missing_reason(python: Path) -> str | None:
    """Why no peer can run here, or None when the peers' venv exists."""
    if not python.exists():
        return f"{python.parent.parent} does not exist (run `{SETUP}`; `make bench` does)"
    return None


def run_peer(name: str, config: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    """The peer's rows, or skip rows naming the reason when it cannot be installed or fails."""
    script, saves, loads = PEERS[name]
    python = peers_python()
    reason = missing_reason(python)
    if reason is None:
        with tempfile.TemporaryDirectory(prefix=f"rlreg-bench-{name}-") as work:
            reason, rows = _run(python, HERE / script, {**config, "workdir": work}, timeout)
        if reason is None:
            return rows
    print(f"registry bench: skipping {name}: {reason}", file=sys.stderr)
    return [*(skipped("snapshot", save, reason) for save in saves), *(skipped("load", load, reason) for load in loads),
            skipped("repeated snapshots", saves[0], reason, metric="written_bytes", unit="B")]


def skipped(case: str, system: str, reason: str, metric: str = "seconds", unit: str = "s") -> dict:
    """A row saying a peer's measurement is missing, and why."""
    return {"case": case, "system": system, "metric": metric, "value": None, "unit": unit,
            "skipped": reason}


def _run(python: Path, script: Path, config: dict, timeout: float):
    env = {**os.environ, "PYTHONPATH": str(HERE), "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run([str(python), str(script)], input=json.dumps(config), text=True,
                              capture_output=True, timeout=timeout, env=env, cwd=config["workdir"])
    except subprocess.TimeoutExpired:
        return f"{script.name} took longer than {timeout:.0f} s", []
    if done.returncode == NOT_INSTALLED:
        last = (done.stderr.strip().splitlines() or ["an import failed"])[-1]
        return f"not installed in {python.parent.parent}: {last} (see its install.log)", []
    if done.returncode:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return f"{script.name} failed (exit {done.returncode}): {tail}", []
    try:
        return None, json.loads(done.stdout)
    except json.JSONDecodeError as e:
        return f"{script.name} printed no JSON rows ({e}): {done.stdout[-200:]!r}", []
