"""``history``, ``events`` and ``show`` say who did what (and their ``--json`` carries the actor)."""

from __future__ import annotations

import getpass
import os
import socket

from clihelpers import Runner, small_module


def test_history_events_and_show_name_the_actor(rlreg, inproc, home_registry):
    home_registry.snapshot("who", small_module(1))
    ci = Runner(rlreg.home, {**rlreg.env, "RLREG_ACTOR": "ci-nightly", "RLREG_RUN_ID": "run-7"})
    moved = ci("alias", "set", "who", "prod", "1", "--json").json()
    me = f"{getpass.getuser()}@{socket.gethostname()}"

    assert moved["actor"]["actor"] == "ci-nightly" and moved["actor"]["run_id"] == "run-7"
    assert moved["actor"]["pid"] not in (None, os.getpid())  # the child process that appended it
    history = inproc("history", "who", "--json").json()
    assert [e["actor"]["actor"] for e in history] == [None, None, "ci-nightly"]
    assert inproc("events", "--json").json()[-1]["actor"] == moved["actor"]

    table = inproc("history", "who").out.splitlines()
    assert table[0].split()[:7] == ["POSITION", "STREAM", "SEQ", "TYPE", "TIME", "(UTC)", "ACTOR"]
    assert me in table[1] and me in table[2] and "ci-nightly (run run-7)" in table[3]
    shown = inproc("show", "who:1").out
    assert f"recorded by:  {getpass.getuser()}@{socket.gethostname()}, pid {os.getpid()}" in shown
    assert inproc("show", "who:1", "--json").json()["version"]["actor"]["pid"] == os.getpid()
