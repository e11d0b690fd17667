"""What the peer processes share: the config they read, timing, the equal RLlib PPO module, output.

Runs inside the peers' venv (`.venv-peers`), imported as a sibling of the peer script: it must not
import rlreg's packages, which are not installed there.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

NOT_INSTALLED = 3  # a peer's exit status when one of its modules cannot be imported


def require(*modules: str) -> None:
    """Exit with NOT_INSTALLED, naming the module, unless every module imports."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            print(f"{type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(NOT_INSTALLED)


def read_config() -> dict[str, Any]:
    """The run's parameters, one JSON object on standard input."""
    return json.load(sys.stdin)


def guarded_stdout():
    """Send everything printed to stderr, keeping the real stdout for the JSON rows."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return out


def emit(out, rows: list[dict[str, Any]]) -> None:
    """Write the rows as one JSON list on the saved stdout."""
    json.dump(rows, out)
    out.write("\n")
    out.flush()


def row(case: str, system: str, metric: str, value: float, unit: str, **detail: Any) -> dict:
    """One measurement; the harness adds the suite, the ratios and the targets."""
    return {"case": case, "system": system, "metric": metric, "value": value, "unit": unit, **detail}


def timed(op: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by op(), and its result.

    First a garbage collection and os.sync(): each run starts with no dirty pages, or its writes
    would be throttled by the kernel's write-back of whatever was written before it.
    """
    gc.collect()
    os.sync()
    start = time.perf_counter()
    result = op()
    return time.perf_counter() - start, result


def runs(repeats: int, op: Callable[[int], Any], before: Callable[[int], Any] | None = None):
    """The seconds of each of `repeats` runs of op(i) (before(i) runs untimed first), last result."""
    seconds, result = [], None
    for i in range(repeats):
        if before is not None:
            before(i)
        took, result = timed(lambda: op(i))
        seconds.append(took)
    return seconds, result


def timing_row(case: str, system: str, seconds: list[float], **detail: Any) -> dict:
    """A row of seconds: the median run as the value, the fastest as `best`."""
    return row(case, system, "seconds", statistics.median(seconds), "s", best=min(seconds),
               runs=len(seconds), **detail)


def fsync_tree(path: str | os.PathLike) -> None:
    """fsync every file under path, then every folder (deepest first) and path's parent: what a durable
    save does before it reports success (the names survive power loss too)."""
    root = Path(path)
    files = [p for p in root.rglob("*") if p.is_file()]
    folders = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for p in [*files, *folders, root, root.parent]:  # (a file as root: itself, then its folder)
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def folder_bytes(path: str | os.PathLike) -> int:
    """Total size of the files under path."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def perturb(module, step: int, max_bytes: int | None = None) -> int:
    """Change the parameters in place (only those of at most max_bytes); returns the bytes changed."""
    import torch

    changed = 0
    with torch.no_grad():
        for p in module.parameters():
            nbytes = p.numel() * p.element_size()
            if max_bytes is None or nbytes <= max_bytes:
                p.add_(1e-3 * (step + 1))
                changed += nbytes
    return changed


def state_bytes(module) -> tuple[int, int]:
    """(parameter count, bytes of the state dict's tensors)."""
    params = sum(p.numel() for p in module.parameters())
    nbytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    return params, nbytes


def same_tensors(a, b) -> None:
    """Raise unless both modules hold bit-identical state."""
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        raise AssertionError(f"loaded module has other tensors: {sorted(sa.keys() ^ sb.keys())[:5]}")
    bad = [k for k in sa if not torch.equal(sa[k], sb[k])]
    if bad:
        raise AssertionError(f"loaded module differs from the saved one in {bad[:5]}")


def rllib_spec(config: dict[str, Any]):
    """RLlib's own PPO module spec with rlreg's module's spaces and model_config."""
    import gymnasium as gym
    import numpy as np
    from ray.rllib.algorithms.ppo.ppo_catalog import PPOCatalog
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    return RLModuleSpec(
        module_class=DefaultPPOTorchRLModule,
        catalog_class=PPOCatalog,
        observation_space=gym.spaces.Box(-1.0, 1.0, (config["obs_dim"],), np.float32),
        action_space=gym.spaces.Discrete(config["n_actions"]),
        model_config=dict(config["model_config"]),
    )


def quiet_environment() -> None:
    """No telemetry, usage stats or progress bars from the peers."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
