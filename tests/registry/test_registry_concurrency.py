"""Several processes snapshotting one name at once: versions 1..N, a tailer sees every event once, in order."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORKERS = 3
SNAPSHOTS = 8


def test_processes_snapshotting_one_name_get_contiguous_versions(reg, db_url, local_storage_url, subprocess_env):
    seen, reached, stop = [], threading.Event(), threading.Event()
    target = [None]

    def tail() -> None:
        for event in reg.follow(0, poll_interval=0.01, stop=stop):
            seen.append(event)
            if target[0] is not None and event.position >= target[0]:
                reached.set()

    tailer = threading.Thread(target=tail, daemon=True)
    tailer.start()
    workers = [
        subprocess.Popen(
            [sys.executable, str(HERE / "snapshot_worker.py"), db_url, local_storage_url, "race/pol",
             str(SNAPSHOTS), str(w)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env,
        )
        for w in range(WORKERS)
    ]
    try:
        for w in workers:
            assert w.stdout.readline().strip() == "ready", w.stderr.read()
        for w in workers:  # all start at once
            w.stdin.write("go\n")
            w.stdin.flush()
        results = [w.communicate(timeout=300) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, (out, err) in zip(workers, results):
        assert w.returncode == 0, err
    per_worker = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]

    total = WORKERS * SNAPSHOTS
    assert sorted(v for vs in per_worker for v in vs) == list(range(1, total + 1))
    assert all(vs == sorted(vs) for vs in per_worker)
    versions = reg.versions("race/pol")
    assert [v.version for v in versions] == list(range(1, total + 1))
    assert len({(v.metadata["worker"], v.metadata["i"]) for v in versions}) == total

    head = reg.head()
    target[0] = head
    if not (seen and seen[-1].position >= head):
        assert reached.wait(60), f"the tailer stopped at {seen[-1].position if seen else 0} of {head}"
    stop.set()
    tailer.join(10)
    assert [e.position for e in seen] == list(range(1, head + 1))
    recorded = [e.payload["version"] for e in seen if e.type == "VersionRecorded"]
    assert recorded == list(range(1, total + 1))
    assert [e.type for e in seen].count("SpecRecorded") == 1
