"""SIGKILL of writers at random points: afterwards every version's objects exist and verify, numbering is
dense, projections equal a rebuild, and gc reclaims the temporary files the killed writers left.

``RLREG_SOAK=1`` runs more rounds (the figure in the report).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

import fault_toys  # noqa: F401 - trusted: the versions are of its class
import invariants
import pytest

from registry import Registry

HERE = os.path.dirname(__file__)
ROUNDS = 10 if os.environ.get("RLREG_SOAK") else 1
WRITERS = 3


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_writers_at_random_points(backend, tmp_path, request):
    db = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    blobs = str(tmp_path / "blobs")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}
    Registry(db, blobs).close()
    rng = random.Random(7)
    kills = temps = 0
    for round_ in range(ROUNDS):
        procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "gc_race_worker.py"), "writer", db, blobs,
                                   f"w{i}", "100000", str(round_ * WRITERS + i), "0"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(WRITERS)]
        for p in procs:
            line = p.stdout.readline()  # its first version committed: it is mid-stream from now on
            assert line.startswith("version"), p.stderr.read()
        for p in rng.sample(procs, len(procs)):
            _sleep_until_random_point(rng)
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=60)
            kills += p.returncode == -signal.SIGKILL
        reg = Registry(db, blobs)
        counts = invariants.check(reg)
        temps += invariants.reclaim_temp_files(reg, blobs)
        invariants.check(reg)  # gc with no grace broke nothing
        reg.close()
    print(f"kill ({backend}): {ROUNDS} rounds, {kills} writers killed, {counts['versions']} versions, "
          f"{temps} temp files reclaimed, nothing lost")
    assert kills == ROUNDS * WRITERS


def _sleep_until_random_point(rng: random.Random) -> None:
    import time

    time.sleep(rng.uniform(0.0, 1.5))
