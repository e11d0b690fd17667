"""The locks of long-lived objects (caches), made again in a forked child.

A child forked while another thread held such a lock would wait for it for ever: the thread that
would release it did not come along. ``self._lock = new_lock(self)`` registers the holder; after a
fork its ``_lock`` is a new, free lock (what it guarded is consistent: the child has one thread).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

_HOLDERS: weakref.WeakSet[Any] = weakref.WeakSet()


def new_lock(holder: Any) -> threading.Lock:
    """A lock for ``holder._lock``, made again in a forked child."""
    _HOLDERS.add(holder)
    return threading.Lock()


def _forked() -> None:
    for holder in list(_HOLDERS):
        holder._lock = threading.Lock()


os.register_at_fork(after_in_child=_forked)
