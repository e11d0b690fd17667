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
