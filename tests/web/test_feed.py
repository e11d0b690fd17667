"""The live feed over a real server: server-sent events fed by ``follow``, filtered, resumable."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
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
    for name in ("localhost.:1", "LOCALHOST", "[::1]:1"):  # (a trailing dot, case, IPv6 in brackets)
        assert httpx.get(f"{server.url}/healthz", headers={"Host": name}).status_code == 200, name
    import socket

    with socket.create_connection((server.info["host"], server.info["port"]), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")  # (no Host at all: a probe, not a browser)
        assert sock.recv(64).startswith(b"HTTP/1.1 200")


def test_loopback_is_any_name_of_a_loopback_address_and_the_bound_name_is_answered():
    """``--host 127.1`` or ``LOCALHOST`` bind the loopback: they were taken for other interfaces (no Host
    check at all), and ``--host 127.0.0.2`` refused requests to the very URL it printed."""
    from rlreg.web.app import HostsOnly
    from rlreg.web.server import host_header_name, is_loopback

    assert all(is_loopback(h) for h in ("127.1", "LOCALHOST", "127.0.0.2", "0:0:0:0:0:0:0:1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "no-such-host.invalid"))
    assert host_header_name("0:0:0:0:0:0:0:1") == "[0:0:0:0:0:0:0:1]"
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["path"])

    import anyio

    async def ask(host: bytes) -> None:
        await HostsOnly(app, ["127.0.0.2"])({"type": "http", "path": "/", "headers": [(b"host", host)]},
                                           None, lambda message: anyio.sleep(0))

    anyio.run(ask, b"127.0.0.2:8765")
    anyio.run(ask, b"rebind.attacker.example:8765")
    assert seen == ["/"]


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


class _Log:
    """A registry whose follow yields events of model ``m`` from ``after`` on, every 10 ms; it raises
    ``DatabaseUnavailableError`` at its first ``fail`` calls (a restart)."""

    def __init__(self, fail: int = 0) -> None:
        self.fail, self.calls = fail, []

    def follow(self, after, stop):
        from types import SimpleNamespace

        from registry.errors import DatabaseUnavailableError

        self.calls.append(after)
        if len(self.calls) <= self.fail:
            raise DatabaseUnavailableError("the server is restarting")
        while not stop.is_set():
            time.sleep(0.01)
            after += 1
            yield SimpleNamespace(position=after, stream="m", type="Tick", payload={}, timestamp=None,
                                  id=None, actor=None, stream_version=after, to_dict=lambda: {})


def test_a_feed_follows_again_once_the_database_is_back(monkeypatch):
    """A restart: the feed waits and follows again after the last event it had (it ended, and the page's
    reconnect got a 503, which ends a browser's EventSource for good)."""
    import anyio

    from rlreg.web import feed

    monkeypatch.setattr(feed, "RETRY", (0.01, 0.05))
    monkeypatch.setattr(feed, "sse_message", lambda e: f"id: {e.position}\n\n")
    log = _Log(fail=2)

    async def first_two() -> list[str]:
        out = feed.Feeds().stream(log, 0)
        await out.__anext__()
        got = [await out.__anext__(), await out.__anext__()]
        await out.aclose()
        return got

    assert anyio.run(first_two) == ["id: 1\n\n", "id: 2\n\n"] and log.calls[:3] == [0, 0, 0]


def test_no_more_than_max_feeds_are_open_and_stop_all_lets_a_blocked_feed_go(monkeypatch):
    """Each feed holds a thread and a connection: past MAX_FEEDS a new one is refused (503; 40 feeds took
    every session of a PostgreSQL role). stop_all closes each stream, so a feed's thread waiting to send to
    a client that stopped reading ends too (it held the shutdown: a traceback each)."""
    import threading

    import anyio

    from rlreg.web import feed

    monkeypatch.setattr(feed, "MAX_FEEDS", 1)
    monkeypatch.setattr(feed, "BUFFER", 1)
    monkeypatch.setattr(feed, "sse_message", lambda e: f"id: {e.position}\n\n")
    feeds = feed.Feeds()

    async def scenario() -> None:
        before = set(threading.enumerate())
        out = feeds.open(_Log(), 0)
        await out.__anext__()  # (open; its thread soon waits: the client reads no more)
        mine = [t for t in threading.enumerate() if t.name == "rlreg-feed" and t not in before]
        assert len(mine) == 1
        with pytest.raises(feed.TooManyFeedsError):
            feeds.open(_Log(), 0)
        await anyio.sleep(0.2)
        feeds.stop_all()
        for _ in range(200):
            if not mine[0].is_alive():
                break
            await anyio.sleep(0.01)
        assert not mine[0].is_alive()
        await out.aclose()
        feeds.open(_Log(), 0)  # (closed: room again; this one never starts, and gives its slot back)

    anyio.run(scenario)


def test_feeds_admitted_together_are_counted_before_they_start(monkeypatch):
    """150 requests at once all passed a count of the feeds already streaming (104 of 150 were let in with
    a cap of 64): the slot is taken when the request is admitted, and given back if its feed never starts."""
    import gc

    from rlreg.web import feed

    monkeypatch.setattr(feed, "MAX_FEEDS", 64)
    feeds = feed.Feeds()
    admitted, refused = [], 0
    for _ in range(150):
        try:
            admitted.append(feeds.open(_Log(), 0))
        except feed.TooManyFeedsError:
            refused += 1
    assert len(admitted) == 64 and refused == 86
    admitted.clear()  # (the clients left before their responses began)
    gc.collect()
    assert feeds.open(_Log(), 0) is not None


def test_a_name_is_loopback_when_the_address_bind_takes_for_it_is(monkeypatch):
    """A name with a loopback IPv4 and a public IPv6 address binds the IPv4 one (an IPv4 socket): it was
    taken for a public server, with no Host check, although only this machine could connect."""
    import socket

    from rlreg.web import server

    def getaddrinfo(host, port, family=0, type=0, *args):
        found = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0)),
                 (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::1", 0, 0, 0))]
        return [f for f in found if family in (0, f[0])]

    monkeypatch.setattr(server.socket, "getaddrinfo", getaddrinfo)
    assert server.is_loopback("mixed.test")
