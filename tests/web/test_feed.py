"""The live feed over a real server: server-sent events fed by ``follow``, filtered, resumable."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
from webtoys import MODEL, OTHER

HERE = Path(__file__).resolve().parent


def read_events(response, count: int, timeout: float = 20.0) -> list[dict]:
    """The first ``count`` SSE messages of ``response`` (comments and heartbeats skipped)."""
    got, data, deadline = [], [], time.monotonic() + timeout
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            break
        if line.startswith("data: "):
            data.append(line[len("data: "):])
        elif line == "" and data:
            got.append(json.loads("\n".join(data)))
            data = []
            if len(got) == count:
                break
    return got


def snapshot_in_another_process(place, name: str) -> subprocess.Popen:
    """Start a process that snapshots ``name`` and prints ``{"position", "committed"}``."""
    return subprocess.Popen([sys.executable, str(HERE / "snapshot_once.py"), place.db_url, place.storage, name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)


def committed(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    return json.loads(out)


def test_feed_replays_after_a_position_with_filters(served):
    server, _ = served
    with httpx.stream("GET", f"{server.url}/api/v1/events/live?after=0&model={MODEL}&type=AliasSet",
                      timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = read_events(r, 3)
    assert [(e["type"], e["payload"]["alias"], e["payload"]["version"]) for e in events] == [
        ("AliasSet", "prod", 2), ("AliasSet", "best", 4), ("AliasSet", "prod", 4)]
    assert all(e["stream"] == MODEL and e["summary"] for e in events)


def test_feed_resumes_from_last_event_id(served):
    server, _ = served
    with httpx.stream("GET", f"{server.url}/api/v1/events/live?after=0", headers={"Last-Event-ID": "5"},
                      timeout=30) as r:
        assert [e["position"] for e in read_events(r, 2)] == [6, 7]


def test_feed_delivers_a_snapshot_made_by_another_process(served):
    server, place = served
    head = httpx.get(server.url + "/healthz", timeout=10).json()["head"]
    with httpx.stream("GET", f"{server.url}/api/v1/events/live?after={head}&model={OTHER}&type=VersionRecorded",
                      timeout=60) as r:
        writer = snapshot_in_another_process(place, OTHER)
        events = read_events(r, 1, timeout=60)
        arrived = time.time()
    made = committed(writer)
    assert events and events[0]["position"] == made["position"]
    assert events[0]["payload"]["metadata"]["from"] == "another process"
    assert arrived - made["committed"] < 2.0


def test_a_filtered_feed_of_a_busy_log_still_sends_keep_alives(monkeypatch):
    """Events of other models keep coming, none passes the filter: the client still hears a keep-alive
    every HEARTBEAT (it heard nothing while the log moved, and an idle proxy could drop the feed)."""
    import threading
    from types import SimpleNamespace

    from rlreg.web import feed

    monkeypatch.setattr(feed, "HEARTBEAT", 0.05)
    stop = threading.Event()

    class Busy:
        def follow(self, after, timeout, stop):  # an event of another model every 10 ms, never idle
            while not stop.is_set():
                time.sleep(0.01)
                after += 1
                yield SimpleNamespace(position=after, stream="other", type="Tick")

    out = feed.messages(Busy(), 0, stop, stream="wanted")
    assert next(out).startswith(": following")
    started = time.monotonic()
    assert next(out) == ": keep-alive\n\n" and time.monotonic() - started < 5
    stop.set()


def test_the_live_feed_refuses_a_position_it_cannot_follow_from_before_it_starts(served):
    """A position past the head (kept from another database) or out of range is a 4xx at once, not a 200
    whose stream then dies."""
    server, _ = served
    head = httpx.get(f"{server.url}/api/v1/events?after=0&limit=10000").json()[-1]["position"]
    for after, status in ((head + 5, 404), (2**64, 400)):
        r = httpx.get(f"{server.url}/api/v1/events/live?after={after}", timeout=10)
        assert r.status_code == status, (after, r.status_code, r.text[:200])
