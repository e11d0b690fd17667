"""``rlreg events --follow``: a tail in its own process sees what another process writes."""

from __future__ import annotations

import json
import queue
import signal
import threading

from clihelpers import small_module

WAIT = 60  # seconds: generous, the machine is shared; a passing run waits only as long as it must


def _lines(stream, out: queue.Queue) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


def _next_event(lines: queue.Queue) -> dict:
    line = lines.get(timeout=WAIT)
    assert line is not None, "the follower ended early"
    return json.loads(line)


def test_follow_prints_json_lines_as_another_process_appends(rlreg, home_registry):
    base = home_registry.head()  # the registry's storage binding
    home_registry.snapshot("tailed", small_module(4))  # positions base+1 (spec) and base+2 (version 1)
    follower = rlreg.popen("events", "--follow", "--json", "--after", str(base + 1))
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(follower.stdout, lines), daemon=True).start()
    try:
        first = _next_event(lines)  # already in the log when the follower started
        assert (first["position"], first["type"]) == (base + 2, "VersionRecorded")

        home_registry.snapshot("tailed", small_module(5))  # written after the follower is running
        home_registry.set_alias("tailed", "best", 2)
        home_registry.remove_alias("tailed", "best")
        seen = [_next_event(lines) for _ in range(3)]
        assert [(e["position"], e["type"]) for e in seen] == [
            (base + 3, "VersionRecorded"), (base + 4, "AliasSet"), (base + 5, "AliasRemoved")
        ]
        assert seen[0]["payload"]["version"] == 2 and seen[1]["payload"] == {"alias": "best", "version": 2}
        assert all(e["stream"] == "tailed" for e in seen)
    finally:
        follower.send_signal(signal.SIGINT)  # Ctrl-C is how a tail ends
        code = follower.wait(timeout=WAIT)
    err = follower.stderr.read()
    assert code == 0 and "Traceback" not in err, err
    assert lines.empty() or lines.get_nowait() is None  # nothing printed after position 5


def test_follow_with_limit_ends_by_itself(rlreg, home_registry, inproc):
    base = home_registry.head()
    home_registry.snapshot("limited", small_module(6))
    home_registry.set_alias("limited", "prod", 1)
    result = inproc("events", "--follow", "--limit", "2", "--after", str(base))
    lines = result.out.splitlines()
    assert len(lines) == 2 and "SpecRecorded" in lines[0] and "VersionRecorded" in lines[1]
    assert lines[0].split()[:2] == [str(base + 1), "limited"]


def test_a_reader_that_leaves_ends_the_tail_quietly(rlreg, home_registry):
    home_registry.snapshot("piped", small_module(15))
    follower = rlreg.popen("events", "--follow", "--json")
    try:
        assert json.loads(follower.stdout.readline())["position"] == 1
        follower.stdout.close()  # like `| head -n 1` exiting
        home_registry.set_alias("piped", "a", 1)  # the follower's next write meets a closed pipe
        home_registry.set_alias("piped", "b", 1)
        code = follower.wait(timeout=WAIT)
    finally:
        if follower.poll() is None:
            follower.kill()
    err = follower.stderr.read()
    assert code == 141 and err == "", err
