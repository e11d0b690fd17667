"""``snapshot(block=False)`` where it meets the rest of the process: the caller's context, fork, a
registry dropped unclosed, a snapshot's own TimeoutError, and writes of the same name made after it.

As in test_registry_pending.py, background work is held up by a progress callback, never by patching.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest
import torch
import registry_toys
from registry_toys import SETTLE, Gate
from registry import Registry, RegistryError

HERE = os.path.dirname(__file__)


def run_script(body: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``body`` run by a fresh interpreter (exit hooks, reference cycles: as a user's script ends)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_a_background_snapshot_records_the_callers_actor_and_reports_progress_in_it(make_sqlite_registry, module):
    reg = make_sqlite_registry()
    seen: list[tuple[str, str | None]] = []  # (thread, actor) of each progress report

    def progress(done: int, total: int) -> None:
        seen.append((threading.current_thread().name, reg.current_actor()["actor"]))

    with reg.acting_as("alice", via="web"):
        pending = reg.snapshot("m", module, block=False, progress=progress)
    assert pending.result(30).actor["actor"] == "alice"
    assert reg.version("m", 1).actor["via"] == "web"
    assert seen and all(thread.startswith("rlreg-snapshot") for thread, _ in seen), seen  # the job's own thread
    assert {actor for _, actor in seen} == {"alice"}


def test_what_a_background_snapshots_callback_leaves_set_in_its_context_is_not_the_snapshots(make_sqlite_registry,
                                                                                               module):
    """The callback runs on the job's thread: an acting_as it enters and never leaves stays in its own call."""
    reg = make_sqlite_registry()
    entered = []

    def progress(done: int, total: int) -> None:
        entered.append(reg.acting_as("mallory"))
        entered[-1].__enter__()  # never left (kept: a context manager collected would leave it)

    with reg.acting_as("alice"):
        pending = reg.snapshot("m", module, block=False, progress=progress)
    assert pending.result(30).actor["actor"] == "alice"
    assert entered
    for manager in entered:  # (left here, in another context than it was entered in: refused)
        with contextlib.suppress(ValueError):
            manager.gen.close()


def _child(work) -> None:
    """Run ``work()`` in this forked child and leave: 0 when it returned, 1 when it raised, 2 when stuck."""
    code = 1
    try:
        signal.signal(signal.SIGALRM, lambda *a: os._exit(2))
        signal.alarm(20)
        work()
        code = 0
    except BaseException as exc:  # noqa: BLE001 - reported by the exit status (and on stderr)
        sys.stderr.write(f"child: {type(exc).__name__}: {exc}\n")
    finally:
        os._exit(code)


def _exit_code(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_forked_child_snapshots_with_a_queue_of_its_own(make_sqlite_registry, module):
    reg = make_sqlite_registry()
    first = reg.snapshot("m", module, block=False)
    assert first.result(30).version == 1  # ended before the fork: the child's copy knows its outcome
    gate = Gate()
    held = reg.snapshot("m", module, block=False, progress=gate)  # in flight at the fork
    assert gate.entered.wait(10)

    def work() -> None:
        with pytest.raises(RegistryError, match=r"recorded by process \d+, which this process was forked from"):
            held.result()  # inherited, with no worker here to end it: it waited forever
        with pytest.raises(RegistryError, match="forked from"):
            held.done()
        with pytest.raises(RegistryError, match="forked from"):
            held.failure()
        assert f"pending in process {os.getppid()}" in repr(held)  # (no error while it is shown)
        assert first.done() and first.result().version == 1 and first.failure() is None
        assert reg.snapshot("m", module).version == 2  # not waiting for the parent's job
        assert reg.snapshot("c", module, block=False).result(15).version == 1
        reg.close()

    pid = os.fork()
    if pid == 0:
        _child(work)
    try:
        assert _exit_code(pid) == 0, "the child's snapshots failed (2: they hung)"
    finally:
        gate.open()
    assert held.result(30).version == 3
    assert [v.version for v in reg.versions("c")] == [1]


def test_a_failure_of_a_registry_dropped_unclosed_is_still_reported_at_exit(tmp_path):
    (tmp_path / "blocked").write_text("a file where the blob folder should be")
    done = run_script(f"""
        import gc, time
        import registry_toys
        from registry import Registry
        module = registry_toys.spec(hidden=16).build()

        def fire_and_forget():
            reg = Registry({"sqlite:///" + str(tmp_path / "reg.db")!r}, {str(tmp_path / "blocked" / "blobs")!r})
            pending = reg.snapshot("lost", module, block=False)
            while not pending.done():
                time.sleep(0.01)

        fire_and_forget()
        gc.collect()  # as the collector would, some time in a long run
        print("leaving")
    """)
    assert done.returncode == 0, done.stderr
    assert "rlreg: a snapshot of 'lost' made with block=False failed: StorageWriteError" in done.stderr


def test_a_closed_registry_is_not_kept_for_the_failure_it_raised(sqlite_url, module, tmp_path):
    (tmp_path / "blocked").write_text("x")
    reg = Registry(sqlite_url, str(tmp_path / "blocked" / "blobs"))
    reg.snapshot("m", module, block=False)
    with pytest.raises(OSError) as raised:
        reg.close()
    del raised  # (its traceback holds the registry)
    gone = weakref.ref(reg)
    del reg
    gc.collect()
    assert gone() is None


@pytest.mark.parametrize("timeout", [None, 30])
def test_a_snapshots_own_timeout_error_is_raised_as_it_is(make_sqlite_registry, module, timeout):
    reg = make_sqlite_registry()

    def progress(done: int, total: int) -> None:  # e.g. a metrics server that did not answer
        raise socket.timeout("metrics server timed out")

    pending = reg.snapshot("m", module, block=False, progress=progress)
    with pytest.raises(TimeoutError, match="^metrics server timed out$"):
        pending.result(timeout)
    assert pending.done()
    reg.close()  # collected by result(): not raised again


WRITES = {
    "delete_model": lambda reg: reg.delete_model("m", reason="done with it"),
    "delete_version": lambda reg: reg.delete_version("m", 2, reason="bad run"),
    "set_alias": lambda reg: reg.set_alias("m", "best", 2),
    "set_tags": lambda reg: reg.set_tags("m", 2, {"stage": "eval"}),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_a_write_made_after_a_pending_snapshot_is_recorded_after_it(make_sqlite_registry, module, write):
    reg = make_sqlite_registry()
    reg.snapshot("m", module)
    gate = Gate()
    pending = reg.snapshot("m", module, block=False, progress=gate)
    assert gate.entered.wait(10)
    opener = threading.Timer(SETTLE, gate.open)
    opener.start()
    started = time.monotonic()
    event = WRITES[write](reg)
    assert pending.done() and time.monotonic() - started >= SETTLE * 0.9, "the write did not wait for the snapshot"
    assert pending.result().version == 2
    assert [e.type for e in reg.history("m")][-2:] == ["VersionRecorded", event.type]
    assert reg.exists("m") == (write != "delete_model")
    opener.join()


@pytest.mark.parametrize("block", [False, True])
def test_a_write_of_the_same_name_from_a_snapshots_progress_callback_does_not_wait_for_it(tmp_path, block):
    """Every report writes, the last too (the objects written: a small local snapshot's append would hold
    the database's write lock then, waiting for the writer thread that runs the callback)."""
    done = run_script(f"""
        import registry_toys
        from registry import Registry
        module = registry_toys.spec(hidden=16).build()
        reg = Registry({"sqlite:///" + str(tmp_path / "reg.db")!r}, {str(tmp_path / "blobs")!r})
        reg.snapshot("m", module)
        registry_toys.train_step(module, 1)  # new weights: objects to write
        reports = []

        def progress(done, total):
            reports.append((done, total))
            reg.set_description("m", f"described at {{done}} of {{total}} bytes")

        out = reg.snapshot("m", module, block={block}, progress=progress)
        print("version", (out if {block} else out.result(30)).version)
        print(reg.history("m")[-1].type, reports[-1][0] == reports[-1][1] > 0)
        reg.close()
    """, timeout=60)  # (a write waiting for a lock its own snapshot holds never ends)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["version 2", "VersionRecorded True"]


def test_a_write_of_another_name_from_a_snapshots_progress_callback_waits_for_that_name(make_sqlite_registry,
                                                                                     module):
    """Only the snapshot's own name is exempt: a delete of ``b`` from a snapshot of ``a`` comes after the
    pending snapshot of ``b`` made before it, which then does not revive ``b``."""
    reg = make_sqlite_registry()
    reg.snapshot("b", module)
    gate = Gate()
    pending_b = reg.snapshot("b", module, block=False, progress=gate)
    assert gate.entered.wait(10)
    deleted = []

    def progress(done, total):
        if not deleted:
            threading.Timer(SETTLE, gate.open).start()
            deleted.append(reg.delete_model("b", reason="retired"))

    reg.snapshot("a", module, block=False, progress=progress).result(30)
    assert pending_b.result(30).version == 2
    assert [e.type for e in reg.history("b")][-2:] == ["VersionRecorded", "ModelDeleted"]
    assert not reg.exists("b")


def test_from_a_progress_callback_a_snapshot_with_no_free_slot_and_close_raise_rather_than_hang(make_sqlite_registry,
                                                                                             module):
    """The slots are held by the job calling back (and jobs waiting for it), and close() waits for that job:
    both waited forever."""
    reg = make_sqlite_registry(pending_snapshots=1)
    errors: list[BaseException] = []

    def progress(done: int, total: int) -> None:
        if not errors:
            for attempt in (lambda: reg.snapshot("other", module, block=False), reg.close):
                try:
                    attempt()
                except RegistryError as exc:
                    errors.append(exc)

    assert reg.snapshot("m", module, block=False, progress=progress).result(30).version == 1
    assert "all 1 pending_snapshots slots are taken" in str(errors[0]), errors
    assert "close() from a background snapshot's progress callback" in str(errors[1]), errors
    assert reg.snapshot("other", module, block=False).result(30).version == 1  # the refused one recorded nothing


def test_a_write_of_the_name_from_a_snapshots_callback_comes_after_the_snapshots_called_before(make_sqlite_registry,
                                                                                            module):
    """Exempt from waiting for itself, it waited for none: it was recorded before the version called earlier."""
    reg = make_sqlite_registry()
    reg.snapshot("m", module)
    gate = Gate()
    earlier = reg.snapshot("m", module, block=False, progress=gate)  # v2, held in its put
    assert gate.entered.wait(10)
    written: list[int] = []

    def progress(done: int, total: int) -> None:
        if not written:
            written.append(reg.set_description("m", "written from v3's callback").position)

    later = reg.snapshot("m", module, block=False, progress=progress)  # v3
    time.sleep(SETTLE)
    gate.open()
    assert (earlier.result(30).version, later.result(30).version) == (2, 3)
    assert [e.type for e in reg.history("m")][1:] == ["VersionRecorded", "VersionRecorded", "DescriptionSet",
                                                       "VersionRecorded"]


def test_a_callback_waiting_for_another_names_snapshot_holds_its_own_snapshot_only(make_sqlite_registry):
    """b's callback waits for a's snapshot while b's writes go on: it is called on b's job thread, so the
    writers a's snapshot needs are free (every writer thread of "b" once queued behind it)."""
    reg = make_sqlite_registry(trusted_modules=["registry_toys"])
    b = registry_toys.spec(hidden=16, module_class=registry_toys.ManyBlocksPolicy).build()
    a = registry_toys.spec(hidden=16).build()
    reg.snapshot("b", b)
    reg.snapshot("a", a)
    registry_toys.train_step(b, 1)
    registry_toys.train_step(a, 1)
    go, inside, outcome = threading.Event(), threading.Event(), []

    def progress(done: int, total: int) -> None:
        if done and not inside.is_set():
            inside.set()
            assert go.wait(30)
            outcome.append(reg.set_description("a", "written while b is stored").type)  # waits for a's snapshot

    pending_b = reg.snapshot("b", b, block=False, progress=progress)
    assert inside.wait(10)
    time.sleep(SETTLE)  # b's other writes end meanwhile
    pending_a = reg.snapshot("a", a, block=False)
    go.set()
    assert pending_a.result(30).version == 2 and pending_b.result(30).version == 2
    assert outcome == ["DescriptionSet"]


def test_callbacks_of_more_snapshots_than_writer_threads_each_waiting_for_another_snapshot_do_not_hang(tmp_path):
    """Eight snapshots' callbacks, each waiting for a later snapshot of "a" (a write of "a" from the
    callback): when callbacks ran on the store's eight writer threads, they held all of them, a's objects
    were never written and everything hung (pending_snapshots above 8). On its job's thread, each
    callback holds its own snapshot only."""
    done = run_script(f"""
        import threading
        import registry_toys
        from registry import Registry
        reg = Registry({"sqlite:///" + str(tmp_path / "reg.db")!r}, {str(tmp_path / "blobs")!r}, pending_snapshots=10)
        modules = [registry_toys.spec(hidden=16).build() for _ in range(10)]
        for i, m in enumerate(modules):
            registry_toys.train_step(m, i + 1)  # weights of their own: objects to write
        reg.snapshot("warm", modules[9])  # (the store's writer threads are made)
        go, inside, lock = threading.Event(), [], threading.Lock()

        def waiting(done, total):
            if done == total:  # (its objects stored: the last report)
                with lock:
                    inside.append(1)
                assert go.wait(30)
                reg.set_description("a", "described while b* are stored")  # waits for a's snapshot

        held = [reg.snapshot(f"b{{i}}", m, block=False, progress=waiting) for i, m in enumerate(modules[:8])]
        while len(inside) < 8:
            threading.Event().wait(0.01)
        a = reg.snapshot("a", modules[8], block=False)
        go.set()
        print("a", a.result(30).version, "b", sorted({{p.result(30).version for p in held}}))
        print(reg.history("a")[-1].type)
        reg.close()
    """, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["a 1 b [1]", "DescriptionSet"], done.stdout


def test_a_snapshot_interrupted_before_its_job_started_leaves_no_job_and_its_slot_free(make_sqlite_registry, module,
                                                                                    monkeypatch):
    """Ctrl-C in ThreadPoolExecutor.submit, after it queued the job (starting a thread): the call gave the
    slot back and the job, run later, recorded a version nobody asked for and gave the slot back again
    (a later snapshot's result() raised 'Semaphore released too many times')."""
    import concurrent.futures

    reg = make_sqlite_registry(pending_snapshots=1)
    adjust = concurrent.futures.ThreadPoolExecutor._adjust_thread_count
    interrupts = [1]

    def interrupted(self) -> None:
        if interrupts:
            interrupts.pop()
            raise KeyboardInterrupt  # the job is queued, no thread runs it yet
        adjust(self)

    monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "_adjust_thread_count", interrupted)
    with pytest.raises(KeyboardInterrupt):
        reg.snapshot("m", module, {"call": 1}, block=False)
    results = [reg.snapshot("m", module, {"call": n}, block=False).result(30) for n in (2, 3)]
    assert [v.version for v in results] == [1, 2]
    assert [v.metadata["call"] for v in reg.versions("m")] == [2, 3]  # nothing of the interrupted call
    reg.close()  # no failure left to report


def test_a_snapshot_interrupted_while_an_earlier_one_runs_keeps_the_next_one_behind_the_earlier(make_sqlite_registry,
                                                                                             module, monkeypatch):
    """The cancelled job was the name's last: ending, it took the name out of line, and the next snapshot of
    the name (and a delete) no longer waited for the one still running."""
    import concurrent.futures

    reg = make_sqlite_registry()
    reg.snapshot("m", module, {"call": 0})
    gate = Gate()
    earlier = reg.snapshot("m", module, {"call": 1}, block=False, progress=gate)
    assert gate.entered.wait(10)
    adjust, interrupts = concurrent.futures.ThreadPoolExecutor._adjust_thread_count, [1]

    def interrupted(self) -> None:
        if interrupts:
            interrupts.pop()
            raise KeyboardInterrupt
        adjust(self)

    monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "_adjust_thread_count", interrupted)
    with pytest.raises(KeyboardInterrupt):
        reg.snapshot("m", module, {"call": 2}, block=False)
    later = reg.snapshot("m", module, {"call": 3}, block=False)
    time.sleep(SETTLE)
    assert not later.done(), "committed before the snapshot called before it"
    gate.open()
    assert (earlier.result(30).version, later.result(30).version) == (2, 3)
    assert [v.metadata["call"] for v in reg.versions("m")] == [0, 1, 3]


def test_close_from_a_callback_leaves_the_registry_open(tmp_path, module):
    """It raised, then closed the registry anyway: an in-memory database was gone."""
    reg = Registry("sqlite://", str(tmp_path / "blobs"))
    errors: list[BaseException] = []

    def progress(done: int, total: int) -> None:
        if not errors:
            try:
                reg.close()
            except RegistryError as exc:
                errors.append(exc)

    assert reg.snapshot("m", module, block=False, progress=progress).result(30).version == 1
    assert len(errors) == 1 and [v.version for v in reg.versions("m")] == [1]
    reg.close()


def test_a_child_forked_from_a_callback_writes_the_name_without_waiting_for_the_parents_jobs(make_sqlite_registry,
                                                                                          module):
    """The child took itself for the parent's job, and waited for the parent's earlier snapshot forever."""
    reg = make_sqlite_registry()
    reg.snapshot("m", module)
    gate = Gate()
    earlier = reg.snapshot("m", module, block=False, progress=gate)
    assert gate.entered.wait(10)
    codes: list[int] = []

    def progress(done: int, total: int) -> None:
        if not codes:
            pid = os.fork()
            if pid == 0:
                _child(lambda: reg.set_description("m", "from a child"))
            codes.append(_exit_code(pid))

    later = reg.snapshot("m", module, block=False, progress=progress)
    deadline = time.monotonic() + 30
    while not codes and time.monotonic() < deadline:
        time.sleep(0.05)
    gate.open()
    assert codes == [0], "the child's write failed (2: it hung)"
    assert (earlier.result(30).version, later.result(30).version) == (2, 3)


def test_a_snapshot_failing_before_its_turn_keeps_the_next_one_and_a_delete_behind_the_earlier(make_sqlite_registry,
                                                                                             module):
    """Failing early, it took its name out of line: a delete returned while the earlier snapshot still ran,
    which then brought the deleted model back."""
    reg = make_sqlite_registry(pending_snapshots=4)
    reg.snapshot("m", module, {"call": 0})
    gate = Gate()
    earlier = reg.snapshot("m", module, {"call": 1}, block=False, progress=gate)
    assert gate.entered.wait(10)

    def fails(done: int, total: int) -> None:
        raise ValueError("the callback failed")

    with pytest.raises(ValueError, match="the callback failed"):
        reg.snapshot("m", module, {"call": 2}, block=False, progress=fails).result(30)
    later = reg.snapshot("m", module, {"call": 3}, block=False)
    deleting = threading.Thread(target=reg.delete_model, args=("m",), kwargs={"reason": "after the others"})
    deleting.start()
    time.sleep(SETTLE)
    assert not later.done() and deleting.is_alive(), "went ahead of the snapshot called before"
    gate.open()
    deleting.join(30)
    assert (earlier.result(30).version, later.result(30).version) == (2, 3)
    assert not reg.exists("m")


def test_ended_snapshots_are_not_kept_alive_by_the_ones_after_them(make_sqlite_registry, module):
    """Each job kept the one before it: a training loop's background snapshots piled up for good."""
    reg = make_sqlite_registry()
    pendings = [reg.snapshot("m", module, block=False) for _ in range(6)]
    for p in pendings:
        p.result(30)
    first = weakref.ref(pendings[0]._future)
    del pendings[:-1]
    gc.collect()
    assert first() is None


def test_a_final_checkpoint_from_an_atexit_handler_is_recorded(tmp_path):
    """concurrent.futures takes no new work once the main script ended: a blocking snapshot writes its
    objects on its own thread then (the first one ever too: registry.pending imported at exit), and a
    block=False one is refused, saying why, rather than raise torch-less RuntimeErrors."""
    done = run_script(f"""
        import atexit
        import registry_toys
        from registry import Registry, RegistryError
        reg = Registry({"sqlite:///" + str(tmp_path / "reg.db")!r}, {str(tmp_path / "blobs")!r})
        module = registry_toys.spec(hidden=16).build()

        @atexit.register
        def final():
            print("final checkpoint:", reg.snapshot("m", module).version, flush=True)
            try:
                reg.snapshot("m", module, block=False)
            except RegistryError as exc:
                print("refused:", exc, flush=True)
    """)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "final checkpoint: 1" in done.stdout, done.stdout
    assert "refused: snapshot of 'm' (block=False) while the interpreter exits" in done.stdout, done.stdout
    with Registry("sqlite:///" + str(tmp_path / "reg.db"), str(tmp_path / "blobs")) as reg:
        assert [v.version for v in reg.versions("m")] == [1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_child_forked_while_the_default_registry_was_being_opened_opens_its_own(sqlite_url, tmp_path, monkeypatch):
    import registry

    monkeypatch.setenv("RLREG_DB_URL", sqlite_url)
    monkeypatch.setenv("RLREG_STORAGE_URL", str(tmp_path / "blobs"))
    with registry._LOCK:  # as a thread of the parent opening the default registry when another forks
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            signal.alarm(20)  # a hang ends the child, and the assertion below reports it
            try:
                registry.default_registry().close()
                os._exit(0)
            finally:
                os._exit(3)
    for _ in range(300):
        ended, status = os.waitpid(pid, os.WNOHANG)
        if ended:
            break
        time.sleep(0.1)
    else:  # pragma: no cover - reported below
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        status = -1
    assert status == 0, "the child hung on the lock its parent held when it forked"


def test_a_sparse_buffer_is_refused_alike_with_block_false(make_sqlite_registry):
    from storage import UnsupportedDtypeError

    reg = make_sqlite_registry()
    module = registry_toys.spec(hidden=16).build()
    module.register_buffer("sparse", torch.eye(3).to_sparse())
    for block in (True, False):
        with pytest.raises(UnsupportedDtypeError, match="'sparse': layout torch.sparse_coo is not supported"):
            reg.snapshot("m", module, block=block)
    assert reg.models() == []
    module.sparse = torch.eye(3)
    assert reg.snapshot("m", module, block=False).result().version == 1  # (the slot was given back)


def test_may_be_stored_of_a_lost_database_asks_the_object_store(tmp_path):
    """An upload thread's lookup of the objects table, when the database is gone: True (the store is
    asked, a HEAD), not a bare SQLAlchemy error; the append that follows reports the database's."""
    import sqlalchemy as sa
    from types import SimpleNamespace
    from registry.gc import may_be_stored

    gone = SimpleNamespace(engine=sa.create_engine(f"sqlite:///{tmp_path / 'no-such-folder' / 'r.db'}"))
    assert may_be_stored(gone)("blake3:" + "0" * 64) is True


def test_block_false_on_an_in_memory_registry_runs_in_the_callers_thread(tmp_path):
    """sqlite:// has one connection, which a job's thread would share with the caller's (SQLAlchemy's
    StaticPool has no lock): their transactions interleaved, and acknowledged versions went missing or
    were recorded twice. Its jobs run before the call returns, in call order, errors on result()."""
    with Registry("sqlite://", str(tmp_path / "blobs")) as reg:
        module = registry_toys.spec(hidden=16).build()
        acknowledged = []
        for i in range(40):
            pending = [reg.snapshot(name, module, {"i": i}, block=False) for name in ("a", "b")]
            assert all(p.done() for p in pending)
            acknowledged += [p.result() for p in pending]
        assert [(v.name, v.version) for v in acknowledged] == [(n, i) for i in range(1, 41) for n in ("a", "b")]
        for v in acknowledged:
            assert reg.version(v.name, v.version).position == v.position
        module.register_buffer("sparse", torch.eye(2).to_sparse())
        with pytest.raises(Exception, match="layout"):
            reg.snapshot("a", module, block=False)


def test_on_an_in_memory_registry_a_callbacks_snapshot_of_its_own_name_is_refused_not_hung(tmp_path):
    """The callback's block=False snapshot would run at once, in the callback's thread, and wait for the
    very snapshot calling back: refused, saying why; one of another name runs."""
    with Registry("sqlite://", str(tmp_path / "blobs")) as reg:
        module = registry_toys.spec(hidden=16).build()
        seen: list[str] = []

        def progress(done: int, total: int) -> None:
            if seen:
                return
            try:
                reg.snapshot("m", module, block=False)
            except RegistryError as exc:
                seen.append(str(exc))
            seen.append(f"other: {reg.snapshot('other', module, block=False).result().version}")

        reg.snapshot("m", module, block=False, progress=progress).result()
        assert "would wait for the one calling back" in seen[0] and seen[1] == "other: 1", seen
        assert [v.version for v in reg.versions("m")] == [1]


def test_on_an_in_memory_registry_a_ctrl_c_in_a_snapshot_is_raised_once(tmp_path):
    reg = Registry("sqlite://", str(tmp_path / "blobs"))
    module = registry_toys.spec(hidden=16).build()

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reg.snapshot("m", module, block=False, progress=interrupt)
    reg.close()  # (raised it again, as a failure nobody collected)
    assert reg.closed


def test_on_an_in_memory_registry_another_threads_snapshot_of_a_running_name_waits_its_turn(tmp_path):
    """Only a snapshot's own callback is refused: another thread's block=False of the same name waits for
    the running one and commits after it, as on a database file."""
    with Registry("sqlite://", str(tmp_path / "blobs")) as reg:
        module = registry_toys.spec(hidden=16).build()
        gate = Gate()
        first = threading.Thread(target=lambda: reg.snapshot("m", module, block=False, progress=gate).result())
        first.start()
        assert gate.entered.wait(30)
        later: list = []
        second = threading.Thread(target=lambda: later.append(reg.snapshot("m", module, block=False).result()))
        second.start()
        time.sleep(SETTLE)
        gate.open()
        first.join(30)
        second.join(30)
        assert [v.version for v in later] == [2] and [v.version for v in reg.versions("m")] == [1, 2]
