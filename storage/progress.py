"""Progress reports of long store operations: ``callback(done_bytes, total_bytes)``, as objects complete."""

from __future__ import annotations

import threading
from collections.abc import Callable

ProgressCallback = Callable[[int, int], None]


class Progress:
    """A thread-safe byte counter that calls ``callback(done, total)`` as work completes.

    ``total`` is fixed up front; calls are serialised, so ``done`` never decreases from one call to
    the next even when transfer threads complete at once. A thread whose work completes while another
    is in the callback does not wait for it: the one in the callback reports the newest count once its
    call returns (so reports may be merged, the last one is never lost). A slow callback, or one that
    waits for other work of the store (a registry write from a snapshot's callback), then holds one
    transfer thread, not every one. Without a callback it does nothing.
    """

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self._callback = callback
        self.total = int(total)
        self.done = 0
        self._reported = -1  # the count last handed to the callback
        self._lock = threading.Lock()  # done and _reported
        self._calling = threading.Lock()  # held by the thread in the callback
        self.cancel = threading.Event()  # set when the transfer fails or is interrupted: writers stop at their next chunk

    def add(self, nbytes: int) -> None:
        """Count ``nbytes`` more as done and report it."""
        if self._callback is None or nbytes <= 0:
            return
        with self._lock:
            self.done += int(nbytes)
        self._report()

    def start(self) -> None:
        """Report ``(0, total)`` so that a display knows the total before the first object completes."""
        if self._callback is not None:
            self._report()

    def _report(self) -> None:
        """Hand the newest count to the callback, unless another thread is in it (it hands ours on)."""
        assert self._callback is not None
        while self._calling.acquire(blocking=False):
            try:
                with self._lock:
                    done, fresh = self.done, self.done != self._reported
                    self._reported = done
                if fresh:
                    self._callback(done, self.total)
            finally:
                self._calling.release()
            with self._lock:  # counted while this thread was in the callback: report it too
                if self.done == self._reported:
                    return
