"""gc racing writers, with real processes: 4 writers whose models share half their tensors, gc in a loop
with a 1 s grace, one writer that stalls 1.6 s (several gc runs longer) between upload and commit on every other snapshot.

``RLREG_SOAK=1`` makes the run longer (more snapshots per writer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import fault_toys  # noqa: F401 - trusted: the versions are of its class
import storage

from registry import Registry

HERE = os.path.dirname(__file__)
GRACE = 1.0
SNAPSHOTS = 24 if os.environ.get("RLREG_SOAK") else 5


def _start(env, *args):
    return subprocess.Popen([sys.executable, os.path.join(HERE, "gc_race_worker.py"), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _done(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_gc_racing_writers(tmp_path, sqlite_url):
    db, blobs, stop = sqlite_url, str(tmp_path / "blobs"), tmp_path / "stop"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}
    Registry(db, blobs).close()  # the schema, before several processes race to create it
    gc = _start(env, "gc", db, blobs, GRACE, stop)
    writers = [_start(env, "writer", db, blobs, f"m{i}", SNAPSHOTS, i, GRACE + 0.6 if i == 3 else 0) for i in range(4)]
    results = [_done(w) for w in writers]
    stop.touch()
    collected = _done(gc)
    stalled = results[3]
    assert stalled["puts"] > len(stalled["versions"]) or stalled["errors"], stalled  # re-uploaded, or a clear error
    assert all("gc" in e for e in stalled["errors"])
    reg = Registry(db, blobs)
    report = reg.verify()
    assert report["ok"], report
    for i in range(4):
        for v in reg.versions(f"m{i}"):
            reg.load(f"m{i}", v.version)  # every committed live version loads (every byte verified)
    events = reg.events()
    assert [e.position for e in events] == list(range(1, len(events) + 1))
    ever = set().union(*(storage.manifest_objects(v.manifest) for v in _all_rows(reg)))
    live = set().union(*(storage.manifest_objects(reg.manifest(f"m{i}", v.version))
                         for i in range(4) for v in reg.versions(f"m{i}")))
    orphans = ever - live
    left_after_race = orphans & set(reg.store.list_digests())
    time.sleep(GRACE)
    from datetime import timedelta

    reg.gc(grace=timedelta(seconds=GRACE))
    left = orphans & set(reg.store.list_digests())
    print(f"gc race: {collected['runs']} gc runs reclaimed {collected['reclaimed']} objects; stalled writer "
          f"{len(stalled['versions'])} versions, {stalled['puts']} puts, {len(stalled['errors'])} errors; "
          f"orphans {len(orphans)}, left after the race {len(left_after_race)}, after one more gc {len(left)}")
    assert orphans and collected["reclaimed"] > 0
    assert len(left) <= 0.01 * len(orphans)
    reg.close()


def _all_rows(reg):
    import sqlalchemy as sa

    from registry.schema import versions

    with reg.event_store.engine.connect() as conn:
        return conn.execute(sa.select(versions.c.manifest)).all()
