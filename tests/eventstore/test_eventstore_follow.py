"""follow(): stops within one event of ``stop``, is woken by commits from other processes, idles cheaply."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
from eventstore_helpers import plain

from registry import tailing
from registry.eventstore import EventStore


def test_follow_stops_within_one_event_of_stop_being_set(store):
    store.append("m", plain(50))
    seen, stop = [], threading.Event()
    for event in store.follow(0, stop=stop):
        seen.append(event.position)
        if len(seen) == 3:
            stop.set()  # 47 more are already in the batch follow read
    assert seen == [1, 2, 3]


def _append_later(url: str) -> None:
    with EventStore(url, check_schema=False) as writer:
        time.sleep(0.3)
        writer.append("other-process", plain(1))


def test_a_commit_in_another_process_wakes_the_follower(store, store_url, monkeypatch):
    monkeypatch.setattr(tailing, "SAFETY_READ", 60.0)  # no re-read but the wake-up's
    store.append("m", plain(1))
    proc = multiprocessing.get_context("fork").Process(target=_append_later, args=(store_url,))
    proc.start()
    started = time.monotonic()
    got = next(iter(store.follow(1, timeout=30)))
    proc.join(30)
    assert got.position == 2 and got.stream == "other-process"
    assert time.monotonic() - started < 20, "woken by the 30 s timeout, not by the commit"


@pytest.mark.parametrize(("poll_interval", "idle"), [(None, 2.0), (0.05, 0.5)], ids=["push", "control-poll"])
def test_an_idle_follower_reads_at_most_once_a_second(store, monkeypatch, poll_interval, idle):
    reads = []
    real = store.events
    monkeypatch.setattr(store, "events", lambda *a, **k: reads.append(1) or real(*a, **k))
    assert list(store.follow(0, poll_interval=poll_interval, timeout=idle)) == []
    if poll_interval is not None:  # the control: polling every 50 ms reads ~10 times in 0.5 s
        assert len(reads) > 4, reads
    else:
        assert len(reads) <= 1 + idle, f"{len(reads)} reads in {idle} s of idling"
