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
    within every HEARTBEAT (it heard nothing while the log moved, or only at nearly twice the interval)."""
    from types import SimpleNamespace

    import anyio

    from rlreg.web import feed

    monkeypatch.setattr(feed, "HEARTBEAT", 0.2)
    follows = []

    class Busy:
        def follow(self, after, stop):  # an event of another model every 10 ms, never idle
            follows.append(after)
            while not stop.is_set():
                time.sleep(0.01)
                after += 1
                yield SimpleNamespace(position=after, stream="other", type="Tick")

    async def heard() -> list[float]:
        out, at = feed.Feeds().stream(Busy(), 0, stream="wanted"), []
        assert (await out.__anext__()).startswith(": following")
        started = time.monotonic()
        for _ in range(3):
            assert await out.__anext__() == ": keep-alive\n\n"
            at.append(time.monotonic() - started)
        await out.aclose()
        return at

    at = anyio.run(heard)
    gaps = [b - a for a, b in zip([0.0, *at], at)]
    assert all(g < 0.2 * 1.5 for g in gaps), gaps
    assert follows == [0]  # one follow for the feed's life (one connection), not one per heartbeat


def test_forty_five_idle_feeds_leave_the_worker_threads_to_other_requests(served):
    """Each feed waits on the event loop, not in one of anyio's forty worker threads (45 idle feeds made
    every other request wait 13-15 s)."""
    server, _ = served
    feeds = []
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=100)) as client:
        try:
            for _ in range(45):  # (send returns once the feed's headers came: it is open)
                feeds.append(client.send(client.build_request("GET", f"{server.url}/api/v1/events/live"), stream=True))
            assert [r.status_code for r in feeds] == [200] * 45
            time.sleep(2)  # (each feed is following by then)
            started = time.monotonic()
            assert client.get(f"{server.url}/api/v1/models").status_code == 200
            assert time.monotonic() - started < 5, "a page waited for a worker thread the feeds held"
        finally:
            for r in feeds:
                r.close()


def test_the_live_feed_refuses_a_position_it_cannot_follow_from_before_it_starts(served):
    """A position past the head (kept from another database) or out of range is a 4xx at once, not a 200
    whose stream then dies."""
    server, _ = served
    head = httpx.get(f"{server.url}/api/v1/events?after=0&limit=10000").json()[-1]["position"]
    for after, status in ((head + 5, 404), (2**64, 400)):
        r = httpx.get(f"{server.url}/api/v1/events/live?after={after}", timeout=10)
        assert r.status_code == status, (after, r.status_code, r.text[:200])


def test_a_server_bound_to_this_machine_refuses_other_host_names(served):
    """DNS rebinding: a page whose own name resolves to 127.0.0.1 must not read the registry through the
    browser of whoever opens it; the machine's own names still work."""
    server, _ = served
    assert httpx.get(f"{server.url}/api/v1/models", headers={"Host": "attacker.example"}).status_code == 400
    assert httpx.get(f"{server.url}/api/v1/models", headers={"Host": "localhost:1"}).status_code == 200
    assert httpx.get(f"{server.url}/api/v1/models").status_code == 200  # (127.0.0.1:port)


def test_ctrl_c_with_open_feeds_ends_them_first_without_a_traceback(fresh):
    """The feeds are stopped when the server begins to shut down (they were stopped only after uvicorn's
    grace had run out, and each was cancelled with a traceback)."""
    from webclient import Server

    server = Server(fresh.db_url, fresh.storage)
    feeds = []
    client = httpx.Client(timeout=30)
    try:
        for _ in range(3):
            feeds.append(client.send(client.build_request("GET", f"{server.url}/api/v1/events/live"), stream=True))
        time.sleep(0.5)
        started = time.monotonic()
        err = server.stop()
        assert server.proc.returncode == 130 and time.monotonic() - started < 10
        assert "Traceback" not in err, err
    finally:
        for r in feeds:
            r.close()
        client.close()
        server.stop()
