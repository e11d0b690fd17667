"""``read_stream(types=…)``: one model's events of some types (the web app's alias history)."""

from __future__ import annotations

from registry.eventstore import NewEvent


def test_read_stream_keeps_only_the_types_asked(store):
    store.append("m", [NewEvent("VersionRecorded", {"version": 1}), NewEvent("AliasSet", {"alias": "prod"}),
                       NewEvent("VersionRecorded", {"version": 2}), NewEvent("AliasRemoved", {"alias": "prod"})])
    store.append("other", [NewEvent("AliasSet", {"alias": "best"})])
    got = store.read_stream("m", types=("AliasSet", "AliasRemoved"))
    assert [(e.stream, e.stream_version, e.type) for e in got] == [("m", 2, "AliasSet"), ("m", 4, "AliasRemoved")]
    assert [e.stream_version for e in store.read_stream("m", after=2, types=["AliasRemoved"])] == [4]
    assert store.read_stream("m", types=["NoSuchType"]) == []
    assert len(store.read_stream("m")) == 4
