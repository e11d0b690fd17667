"""The locks of long-lived objects (caches), made again in a forked child.

A child forked while another thread held such a lock would wait for it for ever: the thread that
would release it did not come along. ``self._lock = new_lock(self)`` registers the holder (a module
too: ``_LOCK = new_lock(sys.modules[__name__], "_LOCK")``); after a fork that attribute is a new, free
lock (what it guarded is consistent: the child has one thread).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

_HOLDERS: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()  # holder -> its lock attributes


def new_lock(holder: Any, attribute: str = "_lock") -> threading.Lock:
    """A lock for ``holder.<attribute>`` (an object or a module), made again in a forked child."""
    _HOLDERS.setdefault(holder, set()).add(attribute)
    return threading.Lock()


def _forked() -> None:
    for holder, attributes in list(_HOLDERS.items()):
        for attribute in attributes:
            setattr(holder, attribute, threading.Lock())


os.register_at_fork(after_in_child=_forked)
