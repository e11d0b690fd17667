"""The command line's start-up: read commands against a bare ``python -c "import sqlalchemy"``.

Each round runs the baseline and every command once, interleaved, each in a fresh interpreter; the
rows are medians over the rounds of wall time and peak resident memory (``wait4``'s ``ru_maxrss``).
Target (issue 10): a read command within 0.3 s and 60 MB of the baseline. ``python -m bench cli``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BASELINE = ("python -c 'import sqlalchemy'", [sys.executable, "-c", "import sqlalchemy"])
COMMANDS = (("models",), ("versions", "walk"), ("show", "walk:1"), ("history", "walk"), ("gc", "--dry-run"))
TARGET_SECONDS = 0.3
TARGET_MB = 60.0
ROUNDS = {True: 3, False: 9}


def row(case: str, system: str, metric: str, value: float, unit: str, **detail: Any) -> dict[str, Any]:
    """One measurement, in the shape of bench/peers/peerlib.row."""
    return {"case": case, "system": system, "metric": metric, "value": value, "unit": unit, **detail}


# Runs argv and prints "wall maxrss_kib": a small process forks it, so the child's peak RSS counts
# only the launcher's few pages before exec, never the bench process's (torch, when other suites ran).
LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.execve(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one run of ``argv``, which must succeed."""
    out = subprocess.run([sys.executable, "-c", LAUNCHER, *argv], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    wall, kib, code = float(out[0]), int(out[1]), int(out[2])
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {code} (run it by hand to see why)")
    return wall, kib / 1024


def make_home(home: Path) -> None:
    """A registry with model ``walk`` (two versions) in ``home``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cli"))
    from clihelpers import small_module

    from registry import Registry

    with Registry(f"sqlite:///{home / 'rlreg.db'}", str(home / "blobs")) as reg:
        reg.snapshot("walk", small_module(1))
        reg.snapshot("walk", small_module(2))


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure, print the table, return the rows."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="rlreg-bench-cli-") as tmp:
        home = Path(tmp)
        make_home(home)
        env = {**os.environ, "RLREG_HOME": str(home), "RLREG_CACHE_DIR": str(home / "cache")}
        for key in ("RLREG_DB_URL", "RLREG_STORAGE_URL"):
            env.pop(key, None)
        cases = {BASELINE[0]: BASELINE[1]}
        cases.update({f"rlreg {' '.join(c)}": [sys.executable, "-m", "rlreg", *c] for c in COMMANDS})
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for name, argv in cases.items():
            measure(argv, env)  # warm the page cache and .pyc files
        for _ in range(ROUNDS[quick]):
            for name, argv in cases.items():
                samples[name].append(measure(argv, env))
        base_s = statistics.median(s for s, _ in samples[BASELINE[0]])
        base_mb = statistics.median(m for _, m in samples[BASELINE[0]])
        print(f"{'command':28} {'wall s':>8} {'peak MB':>8} {'+s':>7} {'+MB':>7} {'ratio':>6}  target")
        for name, got in samples.items():
            wall = statistics.median(s for s, _ in got)
            mb = statistics.median(m for _, m in got)
            extra_s, extra_mb = wall - base_s, mb - base_mb
            ok = extra_s <= TARGET_SECONDS and extra_mb <= TARGET_MB
            print(f"{name:28} {wall:8.3f} {mb:8.1f} {extra_s:+7.3f} {extra_mb:+7.1f} {wall / base_s:6.2f}  "
                  f"{'-' if name == BASELINE[0] else ('ok' if ok else 'MISSED')}")
            detail = {"rounds": len(got), "baseline": BASELINE[0]}
            rows += [
                row("cli start-up", name, "wall", wall, "s", **detail),
                row("cli start-up", name, "peak rss", mb, "MB", **detail),
                row("cli start-up", name, "wall ratio to baseline", wall / base_s, "x", **detail),
                row("cli start-up", name, "extra wall over baseline", extra_s, "s",
                    target=TARGET_SECONDS, **detail),
                row("cli start-up", name, "extra rss over baseline", extra_mb, "MB", target=TARGET_MB, **detail),
            ]
    return rows


if __name__ == "__main__":
    run("--quick" in sys.argv[1:])
