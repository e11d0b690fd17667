"""Progress reports of long store operations: ``callback(done_bytes, total_bytes)``, as objects complete."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Iterable

ProgressCallback = Callable[[int, int], None]


class Progress:
    """A thread-safe byte counter whose ``callback(done, total)`` runs on the operation's own thread only.

    ``total`` is fixed up front; ``done`` never decreases from one call to the next. Work that ends
    on another thread (a writer, an upload, fsspec's event loop) is only counted there: the thread
    that made this counter (the caller of ``put``, ``get``, ``verify``, or a background snapshot's
    job), or the one that last waited on it, reports it when it next looks (``pump``) and while it
    waits for that work (``wait``, ``wait_until``), one report at a time, so reports may be merged
    and the last one is never lost. User code so never runs on a store's worker threads or on the
    event loop: a slow callback, or one that waits for other work of the store (a registry write
    from a snapshot's callback, which waits for earlier snapshots, whose writes need those
    threads), holds up its own operation and nothing else. Without a callback it does nothing
    (``wait`` still waits).
    """

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self._callback = callback
        self.total = int(total)
        self.done = 0
        self._reported = -1  # the count last handed to the callback
        self._lock = threading.Lock()  # done and _reported
        self._owner = threading.get_ident()  # the thread whose add() reports at once (the one that waits)
        self._calling = threading.RLock()  # held while reporting
        self._news = threading.Event()  # counted on another thread, or awaited work ended: look again
        self.cancel = threading.Event()  # set when the transfer fails or is interrupted: writers stop at their next chunk

    @property
    def reports(self) -> bool:
        """Whether there is a callback to report to."""
        return self._callback is not None

    def add(self, nbytes: int) -> None:
        """Count ``nbytes`` more as done: reported now on the operation's thread, else when it next looks."""
        if self._callback is None or nbytes <= 0:
            return
        with self._lock:
            self.done += int(nbytes)
        if threading.get_ident() == self._owner:
            self.pump()
        else:
            self._news.set()

    def start(self) -> None:
        """Report ``(0, total)`` so that a display knows the total before the first object completes."""
        self.pump()

    def pump(self) -> None:
        """Report the newest count if it changed since the last report (the operation's thread calls this)."""
        if self._callback is not None:
            self._news.clear()  # (before reading: a count added after the read sets it again)
            self._report()

    def _report(self) -> None:
        with self._calling:  # (one report at a time, in order, should two threads look)
            with self._lock:
                done, fresh = self.done, self.done != self._reported
                self._reported = done
            if fresh:
                self._callback(done, self.total)

    def poke(self) -> None:
        """Wake the thread in ``wait``/``wait_until`` to look again (what it waits for may have happened)."""
        self._news.set()

    def wait(self, futures: Iterable[concurrent.futures.Future]) -> None:
        """Wait until every one of ``futures`` is done, or one failed (or was cancelled), reporting counts
        as they are added meanwhile; the caller then collects their results.

        The thread that waits reports from now on (``add`` on it reports at once). The callback's
        error is raised from here (the futures go on: the caller settles them)."""
        futures = list(futures)
        if self._callback is None:
            concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
            return
        lock, state = threading.Lock(), {"left": len(futures), "failed": False}

        def ended(f: concurrent.futures.Future) -> None:
            with lock:
                state["left"] -= 1
                state["failed"] = state["failed"] or f.cancelled() or f.exception() is not None
            self._news.set()

        for f in futures:
            f.add_done_callback(ended)  # (at once for one done already)
        self.wait_until(lambda: state["left"] == 0 or state["failed"])

    def wait_until(self, condition: Callable[[], bool]) -> None:
        """Report counts until ``condition()`` holds; whatever makes it hold must ``poke()`` (or ``add``)."""
        self._owner = threading.get_ident()
        while True:
            self._news.clear()  # (first: whatever happens after this wakes the wait below)
            holds = condition()  # (before the report: it then holds the counts added before it held)
            self._report()
            if holds:
                return
            self._news.wait()
