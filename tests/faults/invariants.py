"""What must hold after any fault: objects exist and verify, dense numbering, projections equal a rebuild."""

from __future__ import annotations

import datetime as dt
import os

from registry import Registry


def check(reg: Registry) -> dict:
    """Assert the invariants of the fault suite on ``reg``; return counts for the report."""
    report = reg.verify()
    assert report["ok"], report  # every live version's objects exist, every stored object verifies
    events = reg.events()
    assert [e.position for e in events] == list(range(1, len(events) + 1))  # positions dense
    by_model: dict[str, list[int]] = {}
    for e in events:
        if e.type == "VersionRecorded":
            by_model.setdefault(e.stream, []).append(e.payload["version"])
    for name, numbers in by_model.items():
        assert numbers == list(range(1, len(numbers) + 1)), (name, numbers)  # versions dense
    live = reg.projection_rows()
    reg.rebuild_projections()
    assert reg.projection_rows() == live  # the projections equal a rebuild
    return {"events": len(events), "versions": sum(map(len, by_model.values()))}


def temp_files(folder: str) -> list[str]:
    """Temporary files of interrupted writes under ``folder``."""
    return [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if ".tmp-" in f]


def reclaim_temp_files(reg: Registry, folder: str) -> int:
    """Run gc with no grace; assert no temporary file is left; return how many there were.

    The writers that left them were killed, but gc removes a leftover only once it is an hour old too
    (``registry.gc.LEFTOVER_AGE``: a younger one may be a write in flight): they are aged first, and a
    gc before that must leave them."""
    left = temp_files(folder)
    if left:
        reg.gc(grace=dt.timedelta(0))
        assert temp_files(folder) == left, "a temporary file younger than an hour was removed"
    past = (dt.datetime.now() - dt.timedelta(hours=2)).timestamp()
    for path in left:
        os.utime(path, (past, past))
    reg.gc(grace=dt.timedelta(0))
    assert temp_files(folder) == []
    return len(left)
