"""A storage wrapper failing the Nth operation, N = 1, 2, ... until a snapshot (then a load) completes."""

from __future__ import annotations

import fault_toys
import faulty_fs
import invariants
import pytest

from registry import Registry
from storage import StorageError

faulty_fs.register()


def test_snapshot_and_load_under_a_failing_nth_operation(tmp_path, sqlite_url):
    folder = str(tmp_path / "blobs")
    reg = Registry(sqlite_url, "faulty://" + folder, cache_dir=str(tmp_path / "cache"))
    module = fault_toys.spec().build()
    fault_toys.step(module, 0, 0)
    reg.snapshot("pol", module)
    faults = 0
    for n in range(1, 500):
        fault_toys.step(module, 0, n)
        head = reg.head()
        faulty_fs.FaultyFileSystem.arm(n)
        try:
            reg.snapshot("pol", module)
        except (OSError, StorageError) as exc:
            assert faulty_fs.FaultyFileSystem.fired and "injected fault" in str(exc), exc
            faults += 1
            faulty_fs.FaultyFileSystem.arm(0)
            assert reg.head() == head  # nothing recorded
            invariants.check(reg)
            continue
        fired = faulty_fs.FaultyFileSystem.fired  # (a failed existence check only means "write it again")
        faulty_fs.FaultyFileSystem.arm(0)
        if not fired:
            break  # the snapshot completed without reaching operation n
    assert faults >= 3 and n < 499
    invariants.check(reg)
    assert invariants.reclaim_temp_files(reg, folder) >= 0
    reads = 0
    for n in range(1, 200):
        faulty_fs.FaultyFileSystem.arm(n)
        try:
            got = Registry(sqlite_url, "faulty://" + folder, cache_dir=str(tmp_path / f"cold-{n}")).load("pol", 1)
        except (OSError, StorageError) as exc:
            assert "injected fault" in str(exc) or "injected fault" in str(exc.__cause__), exc
            reads += 1
            continue
        finally:
            fired = faulty_fs.FaultyFileSystem.fired
            faulty_fs.FaultyFileSystem.arm(0)
        if not fired:
            break
    assert reads >= 1 and got is not None
    print(f"nth-failure: {faults} snapshots failed (N = 1..{n - 1}) before one completed; {reads} loads failed")
    reg.close()
