"""Non-blocking snapshots: ``PendingVersion``, the queue that commits them in call order, staging buffers.

``Registry.snapshot(..., block=False)`` copies the module's state once into a staging buffer (host
memory reused from one snapshot to the next, as ``torch.distributed.checkpoint``'s async save
caches its staging copy) and returns; a worker thread hashes, writes and commits it. At most
``limit`` snapshots are in flight (staged, not yet committed): the next call blocks until one ends,
so memory stays bounded by ``limit`` copies of the state. Versions of one name commit in call order:
a job writes its objects at once but appends its event only after the previous job of that name
has ended (succeeded or failed); a later write of that name through the registry (a delete, an
alias, tags) waits for them too, but not one from within a job (a progress callback). A failure is
raised by ``PendingVersion.result()``; one nobody collected that way is raised by
``Registry.close()``, and reported on stderr at interpreter exit (which waits for every pending
snapshot first, before ``concurrent.futures`` refuses new work), even when its registry was dropped
unclosed. A job runs in the caller's context (``acting_as``); a forked child starts with an empty queue, and a
``PendingVersion`` it inherited unfinished raises rather than wait for a worker it does not have.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import concurrent.futures.thread  # its exit hook registered before ours (see _wait_at_exit)
import contextvars
import ctypes
import os
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from registry.records import ModelVersion

if TYPE_CHECKING:
    import torch

DEFAULT_LIMIT = 2
_ALIGN = 64  # bytes: every staged tensor starts on a cache line


class PendingVersion:
    """A snapshot recorded in the background: ``result(timeout=None) -> ModelVersion``, ``done()``."""

    def __init__(self, name: str, future: concurrent.futures.Future,
                 on_collected: Callable[[PendingVersion], None] | None = None) -> None:
        self.name = name
        self._future = future
        self.collected = False  # its outcome was handed to the caller by result()
        self._on_collected = on_collected
        self._pid = os.getpid()  # the process whose worker records it

    def __repr__(self) -> str:
        state = "done" if self._future.done() else "pending" if os.getpid() == self._pid else f"pending in process {self._pid}"
        return f"<PendingVersion {self.name!r} {state}>"

    def done(self) -> bool:
        """Whether the snapshot has ended (committed or failed)."""
        self._in_its_process()
        return self._future.done()

    def result(self, timeout: float | None = None) -> ModelVersion:
        """The recorded version, once committed; its error if it failed; ``TimeoutError`` after ``timeout`` s."""
        self._in_its_process()
        # Waited for apart from the outcome: the snapshot's own TimeoutError (a socket's, a progress
        # callback's) is concurrent.futures.TimeoutError too, and must be raised as what it is.
        if not concurrent.futures.wait([self._future], timeout).done:
            raise TimeoutError(f"snapshot of {self.name!r} has not committed within {timeout} s (it is still running)")
        try:
            return self._future.result()
        finally:
            self.collected = True
            if self._on_collected is not None:
                self._on_collected(self)

    def _in_its_process(self) -> None:
        """A forked child inherits the object but not the worker that ends it: it would wait forever (one
        that had ended before the fork is ended in the child too, and answers)."""
        if os.getpid() != self._pid and not self._future.done():
            from registry.errors import RegistryError

            raise RegistryError(
                f"the snapshot of {self.name!r} (block=False) is recorded by process {self._pid}, which this "
                "process was forked from: its outcome is known there only (ask it there, or snapshot here)")

    def failure(self) -> BaseException | None:
        """The error of a failed snapshot whose ``result()`` nobody called (waits for it to end)."""
        if self.collected:
            return None
        self._in_its_process()
        try:
            return self._future.exception()
        except concurrent.futures.CancelledError as exc:
            return exc


class StagingPool:
    """Host buffers the staged copies go into, kept for the next snapshot (at most ``keep`` spare)."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._free: list[torch.Tensor] = []
        self._lock = threading.Lock()

    def stage(self, tensors: Mapping[str, Any]) -> tuple[Callable[[], dict[str, Any]], Callable[[], None]]:
        """One copy of ``tensors`` (torch or numpy); the function that makes the staged dict of them (to
        call on the worker), and the one that hands the buffer back.

        Contiguous CPU tensors are copied by one memmove each, and only their dtype, shape and place
        are noted: the worker makes their ``storage`` raw tensors over the buffer (no torch view
        either), as the caller's time per tensor is what many small ones cost.
        """
        import numpy as np
        import torch
        from storage.tensors import RawTensor, copy_bytes, dtype_name

        try:
            sized = [(k, t, t.nbytes) for k, t in tensors.items() if isinstance(t, torch.Tensor)]
        except RuntimeError:  # a sparse tensor has no nbytes: refused as block=True refuses it
            from storage.tensors import to_raw

            for k, t in tensors.items():
                if isinstance(t, torch.Tensor):
                    to_raw(k, t)
            raise
        buf = self._take(sum(-(-n // _ALIGN) * _ALIGN for _, _, n in sized))
        base, strided = buf.data_ptr(), torch.strided
        noted: list[tuple[str, str, Any, int, int]] = []  # key, dtype, shape, offset, bytes
        made: dict[str, Any] = {}
        offset = 0
        for key, t, n in sized:
            name = dtype_name(t.dtype)
            if name is not None and t.is_cpu and t.layout is strided and t.is_contiguous():
                if n:
                    copy_bytes(base + offset, t.data_ptr(), n)
                noted.append((key, name, t.shape, offset, n))
            else:
                made[key] = _copy_into(buf[offset : offset + n], t)
            offset += -(-n // _ALIGN) * _ALIGN
        for key, t in tensors.items():
            if not isinstance(t, torch.Tensor):
                made[key] = np.array(t, copy=True)  # numpy state: a fresh copy
        order = list(tensors)

        def staged() -> dict[str, Any]:
            whole = memoryview((ctypes.c_ubyte * buf.numel()).from_address(base)).cast("B") if buf.numel() else None
            empty = memoryview(b"")
            for key, name, shape, start, n in noted:
                made[key] = RawTensor(name, tuple(shape), whole[start : start + n] if n else empty, buf)
            return {key: made[key] for key in order}

        return staged, lambda: self._give(buf)

    def _take(self, nbytes: int) -> torch.Tensor:
        import torch

        with self._lock:
            for i, buf in enumerate(self._free):
                if nbytes <= buf.numel() <= 2 * nbytes + (1 << 20):
                    return self._free.pop(i)
        return torch.empty(nbytes, dtype=torch.uint8)

    def _give(self, buf: torch.Tensor) -> None:
        with self._lock:
            self._free.append(buf)
            del self._free[: -self._keep]

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


def _copy_into(dst: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``t`` copied into the bytes ``dst``, as a tensor of its dtype and shape.

    A plain ``memmove`` for a contiguous CPU tensor: torch's ``copy_`` splits large copies over its
    intra-op threads, which on a busy machine made staging twenty times slower than one memcpy.
    """
    from storage.tensors import copy_bytes

    out = dst.view(t.dtype).view(t.shape)
    if t.device.type == "cpu" and t.is_contiguous() and dst.numel():
        copy_bytes(out.data_ptr(), t.data_ptr(), dst.numel())
    else:
        out.copy_(t)
    return out


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def check_limit(limit: Any) -> None:
    """``ValueError`` unless ``limit`` (``pending_snapshots``) is a positive integer."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"pending_snapshots must be a positive integer, got {limit!r}")


class SnapshotQueue:
    """At most ``limit`` snapshots in flight, committed per name in call order."""

    def __init__(self, limit: int = DEFAULT_LIMIT, *, inline: bool = False) -> None:
        """``inline``: each job runs in the caller's thread, before ``submit`` returns (its ``PendingVersion``
        done): a registry on an in-memory SQLite database, whose one connection a job's thread would
        share with the caller's (``sqlite://``: for one thread)."""
        check_limit(limit)
        self.limit, self.inline = limit, inline
        self._refusal: Callable[[], BaseException] | None = None  # set by close(): what a later submit raises
        self._reset()
        _QUEUES.add(self)

    def _reset(self) -> None:
        """An empty queue: at creation, and in a forked child (the parent's workers, and the jobs and
        slots they held, did not come along)."""
        self.staging = StagingPool(self.limit)
        self._slots = threading.BoundedSemaphore(self.limit)
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._tails: dict[str, concurrent.futures.Future] = {}
        self._jobs: list[PendingVersion] = []  # running, or failed and not yet reported (kept in _KEPT meanwhile)

    def submit(self, name: str, stage: Callable[[], Any], record: Callable[[Any, Callable[[], None]], ModelVersion]):
        """``stage()`` in the caller's thread (after a slot is free), then ``record(staged, wait_turn)`` in a
        worker, in a copy of the caller's context (its ``acting_as``, as a blocking snapshot records).

        From within a job of this queue (its progress callback) a slot is not waited for: the jobs
        holding them may be waiting for that very job. An interrupted call (Ctrl-C) leaves no job
        behind unless the job had started, and then it stays in line (its slot is its own)."""
        future: concurrent.futures.Future | None = None
        taken = False
        try:
            self._refuse_closed()  # (not worth waiting for a slot)
            if self.within_job():
                if not (taken := self._slots.acquire(blocking=False)):
                    from registry.errors import RegistryError

                    raise RegistryError(
                        f"snapshot of {name!r} (block=False) from a background snapshot's progress callback: all "
                        f"{self.limit} pending_snapshots slots are taken, and the snapshots holding them may wait for "
                        "the one calling back (snapshot after it ends, or make the registry with more "
                        "pending_snapshots)")
            else:
                taken = self._slots.acquire()  # back-pressure: blocks while ``limit`` snapshots are in flight
            staged = stage()
            context = contextvars.copy_context()
            future = concurrent.futures.Future()  # (in line before the pool takes it: see the except)
            with self._lock:
                self._refuse_closed()  # (closed while this waited for its slot, or staged)
                if self._pool is None and not self.inline:
                    self._pool = _unless_exiting(name, lambda: concurrent.futures.ThreadPoolExecutor(
                        self.limit, thread_name_prefix="rlreg-snapshot"))
                previous = self._tails.get(name)
                if self.inline and self.within_job() and previous is not None and not previous.done():  # (from its callback)
                    from registry.errors import RegistryError

                    raise RegistryError(
                        f"snapshot of {name!r} (block=False) from the progress callback of a snapshot of {name!r} on an "
                        "in-memory database: it runs in this thread, and would wait for the one calling back (snapshot "
                        "after it ends)")
                future.rlreg_previous = previous  # (what a wait for it waits for instead, were it cancelled)
                pending = PendingVersion(name, future, self._collected)
                future.add_done_callback(lambda f: self._ended(name, f, pending))  # (first: a cancel undoes the rest)
                self._tails[name] = future
                self._jobs.append(pending)
                _KEPT.add(self)  # until reported: its registry may be dropped unclosed meanwhile
                if not self.inline:
                    _unless_exiting(name, lambda: self._pool.submit(context.run, self._run, future, name, record,
                                                                    staged, previous))
            if self.inline:
                context.run(self._run, future, name, record, staged, previous)
                if isinstance(future.exception(), (KeyboardInterrupt, SystemExit)):
                    self._collected(pending)  # (raised here, as a blocking snapshot's: not again at close())
                    raise future.exception()
        except BaseException:
            if taken and (future is None or future.cancel()):  # never started, and now never will: slot back
                self._slots.release()
            raise
        return pending

    def _run(self, future: concurrent.futures.Future, name: str, record, staged: Any,
             previous: concurrent.futures.Future | None) -> None:
        if not future.set_running_or_notify_cancel():
            return  # its call was interrupted before it started (its slot went back then)
        _RUNNING.set((self, name, previous, os.getpid()))  # (in the job's own context)
        try:
            version = record(staged, lambda: _wait(previous))
        except BaseException as exc:
            self._slots.release()
            future.set_exception(exc)
        else:
            self._slots.release()
            future.set_result(version)

    def within_job(self) -> bool:
        """Whether this runs within a job of this queue (its progress callback, in the job's context), in
        the job's own process (a callback may fork: the child has none of the parent's jobs)."""
        running = _RUNNING.get()
        return running is not None and running[0] is self and running[3] == os.getpid()

    def _refuse_closed(self) -> None:
        if self._refusal is not None:
            raise self._refusal()

    def refuse_within_job(self, what: str) -> None:
        """``RegistryError`` if this runs within a job of this queue: ``what`` would wait for that very job."""
        if self.within_job():
            from registry.errors import RegistryError

            raise RegistryError(f"{what} from a background snapshot's progress callback would wait for that very "
                                "snapshot: call it after the snapshot ends")

    def _ended(self, name: str, future: concurrent.futures.Future, pending: PendingVersion) -> None:
        with self._lock:
            if self._tails.get(name) is future:
                before = _unfinished_before(future)
                if before is not None:  # it ended without committing: the next one waits for the one before
                    self._tails[name] = before
                else:
                    del self._tails[name]
            if _committed(future):
                future.rlreg_previous = None  # (ended before it: no chain of ended jobs is kept)
            if future.cancelled() or future.exception() is None:  # a failure waits to be reported
                self._drop(pending)

    def _collected(self, pending: PendingVersion) -> None:
        """``pending.result()`` handed its outcome over: nothing of it is left to report."""
        with self._lock:
            self._drop(pending)

    def _drop(self, pending: PendingVersion) -> None:
        if pending in self._jobs:
            self._jobs.remove(pending)
        if not self._jobs:
            _KEPT.discard(self)

    def unfinished(self) -> list[concurrent.futures.Future]:
        """The jobs still running or waiting for a worker."""
        with self._lock:
            return [job._future for job in self._jobs if not job.done()]

    def wait_turn(self, name: str) -> None:
        """Wait for the pending snapshots of ``name`` (a blocking snapshot, or another write of ``name``,
        comes after them). From within a snapshot of ``name`` of this queue (its progress callback):
        for those made before it, not for itself. A write of another name from there waits as any does."""
        running = _RUNNING.get()
        if self.within_job() and running[1] == name:
            _wait(running[2])
            return
        with self._lock:
            previous = self._tails.get(name)
        _wait(previous)

    def drain(self) -> list[PendingVersion]:
        """Wait for every pending snapshot; the failed ones whose error nobody collected (``Registry.close``
        refuses to call this from within a job first)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._lock:
            jobs, self._jobs = self._jobs, []
            _KEPT.discard(self)
        self.staging.clear()
        return [job for job in jobs if job.failure() is not None]

    def close(self, refusal: Callable[[], BaseException]) -> None:
        """Refuse new snapshots (``refusal()`` is raised), wait for every pending one; raise the first
        uncollected failure (naming how many). A ``submit`` that took its slot before still runs only
        if it was queued before this: one queued after would make a new pool nobody waits for."""
        with self._lock:
            self._refusal = refusal
        failed = self.drain()
        if failed:
            exc = failed[0].failure()
            assert exc is not None
            exc.add_note(
                f"(a snapshot of {failed[0].name!r} made with block=False failed in the background; "
                f"{len(failed)} failed snapshot(s) in all whose result() was never called)"
            )
            raise exc


def _unless_exiting(name: str, start: Callable[[], Any]) -> Any:
    """``start()``; ``RegistryError`` if it is refused as the interpreter exits (an ``atexit`` handler's
    ``block=False``: concurrent.futures takes no new work then, and nothing would wait for it)."""
    try:
        return start()
    except RuntimeError as exc:
        from registry.errors import RegistryError

        raise RegistryError(f"snapshot of {name!r} (block=False) while the interpreter exits ({exc}): take it "
                            "with block=True") from None


def _wait(future: concurrent.futures.Future | None) -> None:
    """Wait for the job ``future``, and, if it ended without committing (failed before its turn, or
    cancelled), for the one before it."""
    while future is not None:
        concurrent.futures.wait([future])
        future = None if _committed(future) else getattr(future, "rlreg_previous", None)


def _committed(future: concurrent.futures.Future) -> bool:
    """Whether the job ended with its version committed (it waited for the one before it first)."""
    return future.done() and not future.cancelled() and future.exception() is None


def _unfinished_before(future: concurrent.futures.Future) -> concurrent.futures.Future | None:
    """The latest job before the ended ``future`` still running, if ``future`` did not commit."""
    while future is not None and future.done() and not _committed(future):
        future = getattr(future, "rlreg_previous", None)
    return future if future is not None and not future.done() else None


_QUEUES: weakref.WeakSet[SnapshotQueue] = weakref.WeakSet()  # every queue, waited for at exit
# Queues with a job running or failed and not yet reported: a registry dropped unclosed (a reference
# cycle the collector ends) must not take a failure nobody saw with it. Closing it lets go.
_KEPT: set[SnapshotQueue] = set()
# (queue, name, the job of name before it, process) of the job this runs within
_RUNNING: contextvars.ContextVar[tuple[SnapshotQueue, str, concurrent.futures.Future | None, int] | None] = (
    contextvars.ContextVar("rlreg_snapshot_job", default=None))


def _wait_at_exit() -> None:
    """Wait for every pending snapshot before ``concurrent.futures`` refuses new work at exit: a job
    still hands its writes to the store's threads. threading runs these hooks last registered first,
    and concurrent.futures.thread (imported above) registered its own already."""
    while running := [f for queue in list(_QUEUES) for f in queue.unfinished()]:
        concurrent.futures.wait(running)


try:
    threading._register_atexit(_wait_at_exit)
except RuntimeError:  # first imported at exit (an atexit handler's snapshot): its jobs are refused anyway
    pass


@atexit.register
def _report_at_exit() -> None:
    """At interpreter exit (after the pending jobs ended): report uncollected failures."""
    for queue in list(_QUEUES):
        for job in queue.drain():
            exc = job.failure()
            sys.stderr.write(f"rlreg: a snapshot of {job.name!r} made with block=False failed: "
                             f"{type(exc).__name__}: {exc}\n")


def _forked() -> None:
    """In a forked child: empty queues (the parent waits for, and reports, its own jobs)."""
    for queue in list(_QUEUES):
        queue._reset()
    _KEPT.clear()


os.register_at_fork(after_in_child=_forked)
