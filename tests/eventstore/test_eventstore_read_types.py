"""``read_stream(types=…)``: one stream's events of some types (the web app's alias history)."""

from __future__ import annotations

from registry.eventstore import NewEvent


def test_read_stream_keeps_only_the_types_asked(store):
    store.append("m", [NewEvent("Noted", {"n": 1}), NewEvent("Flagged", {"n": 2}),
                       NewEvent("Noted", {"n": 3}), NewEvent("Cleared", {"n": 4})])
    store.append("other", [NewEvent("Flagged", {"n": 5})])
    got = store.read_stream("m", types=("Flagged", "Cleared"))
    assert [(e.stream, e.stream_version, e.type, e.payload) for e in got] == [
        ("m", 2, "Flagged", {"n": 2}), ("m", 4, "Cleared", {"n": 4})]
    assert [e.stream_version for e in store.read_stream("m", after=2, types=["Cleared"])] == [4]
    assert store.read_stream("m", types=["NoSuchType"]) == []
    assert len(store.read_stream("m")) == 4
