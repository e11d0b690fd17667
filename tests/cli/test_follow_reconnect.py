"""``rlreg events --follow`` outlives a PostgreSQL outage: it reconnects with backoff and resumes after
the last position it printed, saying so on stderr. The outage is real: our own TCP proxy in front of
the shared server is cut (the server itself keeps running for everybody else)."""

from __future__ import annotations

import json
import queue
import signal
import threading
import time

import pytest
from clihelpers import small_module
from sqlalchemy.engine import make_url
from tcpproxy import TcpProxy

WAIT = 90  # seconds: generous, the machine is shared


def _pump(stream, out: queue.Queue) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


def _get(lines: queue.Queue, what: str) -> str:
    line = lines.get(timeout=WAIT)
    assert line is not None, f"the follower ended while waiting for {what}"
    return line


def _wait_for(lines: queue.Queue, fragment: str) -> str:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        line = _get(lines, fragment)
        if fragment in line:
            return line
    raise AssertionError(f"no stderr line with {fragment!r}")


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_follow_reconnects_after_the_database_goes_away_and_resumes(rlreg, pg_url, tmp_path):
    from registry import Registry

    direct = Registry(pg_url, str(tmp_path / "blobs"))
    direct.snapshot("tailed", small_module(3))  # positions 1 (StorageBound), 2 (spec), 3 (version 1)
    url = make_url(pg_url)
    proxy = TcpProxy((url.host, url.port or 5432)).start()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    follower = rlreg.popen("events", "--follow", "--json", "--db", proxied)
    out: queue.Queue = queue.Queue()
    err: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(follower.stdout, out), daemon=True).start()
    threading.Thread(target=_pump, args=(follower.stderr, err), daemon=True).start()
    try:
        assert [json.loads(_get(out, "event"))["position"] for _ in range(3)] == [1, 2, 3]
        proxy.cut()  # the database vanishes for the follower
        lost = _wait_for(err, "lost the database")
        assert "reconnecting with backoff, then resuming after position 3" in lost
        direct.set_alias("tailed", "best", 1)  # committed while the follower is cut off
        direct.set_alias("tailed", "prod", 1)
        time.sleep(1.0)  # a few failed attempts, backing off
        proxy.start()
        assert "reconnected, resuming after position 3" in _wait_for(err, "reconnected")
        resumed = [json.loads(_get(out, "event")) for _ in range(2)]
        assert [(e["position"], e["payload"]["alias"]) for e in resumed] == [(4, "best"), (5, "prod")]
        direct.remove_alias("tailed", "prod")  # and it goes on tailing
        assert json.loads(_get(out, "event"))["position"] == 6
    finally:
        follower.send_signal(signal.SIGINT)
        code = follower.wait(timeout=WAIT)
        proxy.cut()
        direct.close()
    assert code == 0
    rest = []
    while (line := err.get(timeout=WAIT)) is not None:
        rest.append(line)
    assert not any("Traceback" in line for line in rest), rest


@pytest.mark.postgres
def test_follow_on_an_unreachable_database_still_exits_6_at_once(rlreg):
    result = rlreg("events", "--follow", "--db", "postgresql://postgres@127.0.0.1:1/nope", code=None)
    assert result.code == 6 and "Traceback" not in result.err
