"""Who did what: every event the registry appends records its actor, which a caller can set."""

from __future__ import annotations

import getpass
import os
import socket
import threading

import pytest
import registry_toys as toys

from registry import InvalidEventError
from registry.actor import describe, details, rlreg_version


def _process(**extra):
    return {"user": getpass.getuser(), "host": socket.gethostname(), "pid": os.getpid(),
            "rlreg_version": rlreg_version(), "actor": None, "run_id": None, **extra}


def test_every_event_records_the_process_and_the_environment(reg, monkeypatch):
    module = toys.spec().build()
    reg.snapshot("m", module)
    monkeypatch.setenv("RLREG_ACTOR", "ci-nightly")
    monkeypatch.setenv("RLREG_RUN_ID", "run-42")
    reg.snapshot("m", module)
    reg.set_alias("m", "prod", 2)
    events = reg.history("m")
    assert [e.type for e in events] == ["SpecRecorded", "VersionRecorded", "VersionRecorded", "AliasSet"]
    assert [e.actor for e in events[:2]] == [_process(), _process()]
    assert [e.actor for e in events[2:]] == [_process(actor="ci-nightly", run_id="run-42")] * 2
    assert reg.version("m", 1).actor == _process() and reg.version("m", 2).actor["actor"] == "ci-nightly"
    assert reg.events()[-1].to_dict()["actor"] == events[-1].actor
    assert reg.versions("m")[1].to_dict()["actor"]["run_id"] == "run-42"


def test_an_explicit_actor_overrides_fields_per_block_and_per_thread(make_registry):
    reg = make_registry(actor={"via": "web"})
    module = toys.spec().build()
    seen = {}

    def other_thread():
        seen["actor"] = reg.current_actor()

    with reg.acting_as("alice", token="t-1") as actor:
        assert actor == _process(actor="alice", token="t-1", via="web")
        reg.snapshot("m", module)
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    reg.set_alias("m", "prod", 1)
    assert seen["actor"] == _process(via="web")  # another thread is not inside the block
    assert [e.actor for e in reg.history("m")] == [_process(actor="alice", token="t-1", via="web")] * 2 + [_process(via="web")]


def test_a_bad_actor_is_refused_before_anything_is_written(reg):
    head = reg.head()  # the registry's storage binding
    with pytest.raises(InvalidEventError, match=r"actor field 'who': list is not a JSON scalar"):
        reg.acting_as(who=["a"]).__enter__()
    with pytest.raises(InvalidEventError, match=r"actor field 'actor': 201 characters, at most 200"):
        reg.acting_as("x" * 201).__enter__()
    assert reg.head() == head


def test_describe_and_details():
    assert describe(None) == details(None) == "-"
    assert describe({"user": "bob", "host": "lap"}) == "bob@lap"
    assert describe({"user": "bob", "host": "lap", "actor": "ci", "run_id": "7"}) == "ci (run 7)"
    full = {"user": "bob", "host": "lap", "pid": 3, "rlreg_version": "0.1.0", "actor": "ci", "run_id": None}
    assert details(full) == "ci (bob@lap, pid 3, rlreg 0.1.0)"
    assert details({**full, "actor": None, "via": "web"}) == "bob@lap, pid 3, rlreg 0.1.0, via=web"


def test_os_user_follows_the_user_variables(monkeypatch):
    from registry import actor

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    by_uid = actor.os_user()
    monkeypatch.setenv("USER", "carol")
    assert actor.os_user() == "carol"  # not the name remembered before
    monkeypatch.setenv("LOGNAME", "dave")
    assert actor.os_user() == "dave"
    monkeypatch.delenv("LOGNAME")
    monkeypatch.delenv("USER")
    assert actor.os_user() == by_uid
