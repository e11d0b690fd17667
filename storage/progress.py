"""Progress reports of long store operations: ``callback(done_bytes, total_bytes)``, once per object."""

from __future__ import annotations

import threading
from collections.abc import Callable

ProgressCallback = Callable[[int, int], None]


class Progress:
    """A thread-safe byte counter that calls ``callback(done, total)`` each time work completes.

    ``total`` is fixed up front; calls are serialised, so ``done`` never decreases from one call to
    the next even when transfer threads complete at once. Without a callback it does nothing.
    """

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self._callback = callback
        self.total = int(total)
        self.done = 0
        self._lock = threading.Lock()
        self.cancel = threading.Event()  # set when the transfer fails or is interrupted: writers stop at their next chunk

    def add(self, nbytes: int) -> None:
        """Count ``nbytes`` more as done and report it."""
        if self._callback is None or nbytes <= 0:
            return
        with self._lock:
            self.done += int(nbytes)
            self._callback(self.done, self.total)

    def start(self) -> None:
        """Report ``(0, total)`` so that a display knows the total before the first object completes."""
        if self._callback is not None:
            with self._lock:
                self._callback(self.done, self.total)
