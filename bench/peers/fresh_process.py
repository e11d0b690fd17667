"""The first load in a new process: what a user pays once per process (an inference server's start).

`first_load_seconds(kind, job)` runs this module in a new interpreter of the benchmark's venv; the
child imports everything first (untimed), then times one load: `rlreg` (`Registry.load`) or
`safetensors` (build from the spec + `load_file` + `load_state_dict`), and prints the seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def first_load_seconds(kind: str, job: dict[str, Any], repeats: int) -> list[float]:
    """The seconds of `repeats` first loads, each in a new process."""
    seconds = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-m", "bench.peers.fresh_process", kind],
                              input=json.dumps(job), capture_output=True, text=True, cwd=ROOT,
                              timeout=600)
        if done.returncode:
            raise RuntimeError(f"first {kind} load failed: {done.stderr.strip()[-500:]}")
        seconds.append(float(done.stdout.strip().splitlines()[-1]))
    return seconds


def _child(kind: str, job: dict[str, Any]) -> float:
    import torch  # noqa: F401 - imported before the clock starts, as in a running program
    from safetensors.torch import load_file

    from bench.registry import ppo_spec
    from registry import Registry

    if kind == "rlreg":  # opening the registry (database, schema check) is part of it
        start = time.perf_counter()
        Registry(job["db_url"], job["storage_url"]).load(job["name"], job["version"])
        return time.perf_counter() - start
    spec = ppo_spec(job["config"])
    start = time.perf_counter()
    spec.build().load_state_dict(load_file(job["file"]), strict=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    print(_child(sys.argv[1], json.load(sys.stdin)))
