"""``snapshot(block=False)``: call-order commits, back-pressure, errors on result() and close() and at exit.

The background work is held up for real (a progress callback that waits on an event: it runs in
the worker, inside ``Store.put``), never by patching the registry.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import registry_toys
from registry_toys import SETTLE, Gate
from registry import NotFoundError, PendingVersion, Registry
from registry.errors import InvalidNameError


def test_versions_commit_in_call_order_and_hold_the_state_at_call_time(make_registry, module):
    reg = make_registry()
    slow = Gate()
    expected = []
    first = reg.snapshot("m", module, {"i": 0}, block=False, progress=slow)
    expected.append(copy.deepcopy(module))
    assert slow.entered.wait(10)
    registry_toys.train_step(module, 1)  # the module trains on while version 1 is being written
    second = reg.snapshot("m", module, {"i": 1}, block=False)
    expected.append(copy.deepcopy(module))
    registry_toys.train_step(module, 2)
    time.sleep(SETTLE)
    assert not second.done(), "the second snapshot committed before the first one ended"
    assert not first.done()
    slow.open()
    assert (first.result(30).version, second.result(30).version) == (1, 2)
    for v, want in enumerate(expected, start=1):
        assert reg.version("m", v).metadata == {"i": v - 1}
        assert registry_toys.states_equal(reg.load("m", v), want)


def test_many_in_a_row_and_a_blocking_snapshot_commits_after_them(make_sqlite_registry, module):
    reg = make_sqlite_registry(pending_snapshots=3)
    pending = []
    for i in range(6):
        registry_toys.train_step(module, i)
        pending.append(reg.snapshot("m", module, {"i": i}, block=False))
    last = reg.snapshot("m", module, {"i": 6})  # block=True: after the pending ones
    assert [p.result(30).version for p in pending] == [1, 2, 3, 4, 5, 6]
    assert last.version == 7
    assert [v.metadata["i"] for v in reg.versions("m")] == list(range(7))
    assert isinstance(pending[0], PendingVersion) and pending[0].done()


def test_back_pressure_blocks_the_call_beyond_the_limit(make_sqlite_registry, module):
    reg = make_sqlite_registry(pending_snapshots=2)
    gates = [Gate(), Gate()]
    held = [reg.snapshot("m", module, {"i": i}, block=False, progress=g) for i, g in enumerate(gates)]
    for g in gates:
        assert g.entered.wait(10)
    returned = threading.Event()
    third: list[PendingVersion] = []

    def call() -> None:
        third.append(reg.snapshot("other", module, {"i": 2}, block=False))
        returned.set()

    caller = threading.Thread(target=call)
    caller.start()
    assert not returned.wait(SETTLE), "a third snapshot got through while two were in flight"
    gates[0].open()
    assert returned.wait(10), "the call stayed blocked after a snapshot ended"
    gates[1].open()
    caller.join(10)
    assert [p.result(30).version for p in [*held, *third]] == [1, 2, 1]


def test_an_error_surfaces_on_result_and_the_next_snapshot_still_commits(make_sqlite_registry, module, tmp_path):
    (tmp_path / "blocked").write_text("a file where the blob folder should be")
    reg = make_sqlite_registry(str(tmp_path / "blocked" / "blobs"))
    failing = reg.snapshot("m", module, block=False)
    with pytest.raises(OSError):
        failing.result(30)
    assert failing.done()
    with pytest.raises(NotFoundError):
        reg.version("m")
    reg.close()  # collected by result(): not raised again


def test_close_raises_an_uncollected_background_error(make_sqlite_registry, module, tmp_path):
    (tmp_path / "blocked").write_text("x")
    reg = make_sqlite_registry(str(tmp_path / "blocked" / "blobs"))
    reg.snapshot("m", module, block=False)
    reg.snapshot("m", module, block=False)
    with pytest.raises(OSError) as info:
        reg.close()
    assert "2 failed snapshot(s) in all whose result() was never called" in "".join(info.value.__notes__)


def test_close_waits_for_pending_snapshots(make_sqlite_registry, sqlite_url, local_storage_url, module):
    reg = make_sqlite_registry()
    for i in range(3):
        reg.snapshot("m", module, {"i": i}, block=False)
    reg.close()
    with Registry(sqlite_url, local_storage_url) as again:
        assert [v.version for v in again.versions("m")] == [1, 2, 3]


def test_bad_input_is_refused_at_the_call(make_sqlite_registry, module):
    reg = make_sqlite_registry(pending_snapshots=1)
    with pytest.raises(InvalidNameError):
        reg.snapshot("bad name!", module, block=False)
    with pytest.raises(TypeError, match="is not an RLModule"):
        reg.snapshot("m", object(), block=False)
    assert reg.snapshot("m", module, block=False).result(30).version == 1  # no slot was lost
    with pytest.raises(ValueError, match="pending_snapshots must be a positive integer, got 0"):
        make_sqlite_registry(pending_snapshots=0)


def test_result_times_out_while_the_snapshot_runs(make_sqlite_registry, module):
    reg = make_sqlite_registry()
    gate = Gate()
    pending = reg.snapshot("m", module, block=False, progress=gate)
    with pytest.raises(TimeoutError, match="has not committed within 0.1 s"):
        pending.result(timeout=0.1)
    gate.open()
    assert pending.result(30).version == 1


def test_interpreter_exit_waits_for_pending_snapshots_and_reports_failures(sqlite_url, tmp_path):
    (tmp_path / "blocked").write_text("x")
    # Each good snapshot is held before it hands its objects to the store's writer threads, until
    # the script has ended: those writes are submitted while the interpreter exits.
    script = textwrap.dedent(f"""
        import time
        import registry_toys
        from registry import Registry
        module = registry_toys.spec(hidden=16).build()
        hold = lambda done, total: time.sleep(0.5) if done == 0 else None
        good = Registry({sqlite_url!r}, {str(tmp_path / "blobs")!r}, pending_snapshots=3)
        pending = [good.snapshot("m", module, {{"i": i}}, block=False, progress=hold) for i in range(3)]
        bad = Registry({"sqlite:///" + str(tmp_path / "other.db")!r}, {str(tmp_path / "blocked" / "blobs")!r})
        bad.snapshot("lost", module, block=False)
        assert not any(p.done() for p in pending)
        print("leaving")
    """)
    here = os.path.dirname(__file__)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    failed = [line for line in done.stderr.splitlines() if line.startswith("rlreg: ")]
    assert len(failed) == 1 and failed[0].startswith(
        "rlreg: a snapshot of 'lost' made with block=False failed: StorageWriteError: "), done.stderr
    with Registry(sqlite_url, str(tmp_path / "blobs")) as reg:
        assert [(v.version, v.metadata["i"]) for v in reg.versions("m")] == [(1, 0), (2, 1), (3, 2)]
