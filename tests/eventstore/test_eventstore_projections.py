"""Projections: applied in the append's transaction, guarded, and rebuilt from the log identically."""

from __future__ import annotations

import pytest
from eventstore_helpers import spec_event, version_event

from registry import errors
from registry.eventstore import NewEvent
from registry.projections import Projections

SPEC_A, SPEC_B = {"class": "A", "hidden": [64, 64]}, {"class": "A", "hidden": [128]}


def _populate(store) -> None:
    store.append("pong/ppo", [spec_event(SPEC_A), version_event(1, SPEC_A, {"reward": 1.5})], expected_version=0)
    store.append("pong/ppo", [version_event(2, SPEC_A)], expected_version=2)
    store.append("pong/ppo", [NewEvent("AliasSet", {"alias": "best", "version": 1})])
    store.append("cart", [spec_event(SPEC_B), version_event(1, SPEC_B)])
    store.append("pong/ppo", [spec_event(SPEC_B), version_event(3, SPEC_B)])
    store.append("pong/ppo", [NewEvent("AliasSet", {"alias": "best", "version": 3})])
    store.append("pong/ppo", [NewEvent("AliasSet", {"alias": "prod", "version": 2})])
    store.append("pong/ppo", [NewEvent("AliasRemoved", {"alias": "prod"})])
    store.append("cart", [NewEvent("Tick", {})])  # not a projection event: left to other consumers


def _dump(store):
    with store.engine.connect() as conn:
        return Projections().dump(conn)


def test_live_projections_follow_the_log(store):
    _populate(store)
    dump = _dump(store)
    models = {m["name"]: m for m in dump["rlreg_models"]}
    assert models["pong/ppo"]["latest_version"] == 3 and models["cart"]["latest_version"] == 1
    assert models["pong/ppo"]["spec_digest"] == dump["rlreg_versions"][-1]["spec_digest"]
    assert [(a["name"], a["alias"], a["version"]) for a in dump["rlreg_aliases"]] == [("pong/ppo", "best", 3)]
    assert [(v["name"], v["version"]) for v in dump["rlreg_versions"]] == [("cart", 1)] + [("pong/ppo", i) for i in (1, 2, 3)]
    assert dump["rlreg_versions"][1]["metadata"] == {"reward": 1.5}
    assert len(dump["rlreg_specs"]) == 2
    assert (models["cart"]["position"], models["pong/ppo"]["position"], store.head()) == (6, 11, 12)


def test_rebuilt_projections_equal_the_live_ones(store):
    _populate(store)
    live = _dump(store)
    assert store.rebuild_projections() == store.head()
    assert _dump(store) == live
    with store.transaction() as conn:
        Projections().clear(conn)
    assert _dump(store) == {name: [] for name in live}
    store.rebuild_projections()
    assert _dump(store) == live


@pytest.mark.parametrize(
    ("events", "error", "message"),
    [
        ([version_event(5, SPEC_A)], errors.ConflictError, r"model 'm': version 5 recorded after version 1 \(expected 2\)"),
        ([version_event(2, SPEC_B)], errors.NotFoundError, r"model 'm' version 2: spec '[0-9a-f]{64}' was never recorded"),
        ([NewEvent("AliasSet", {"alias": "best", "version": 9})], errors.NotFoundError,
         r"model 'm': alias 'best' cannot point at version 9, which does not exist \(latest is 1\)"),
        ([NewEvent("AliasRemoved", {"alias": "prod"})], errors.NotFoundError, r"model 'm' has no alias 'prod' to remove"),
        ([NewEvent("AliasSet", {"alias": "best"})], errors.InvalidEventError, r"event AliasSet at stream 'm' has a malformed payload"),
        ([NewEvent("SpecRecorded", {"spec": SPEC_B, "spec_digest": "0" * 64})], errors.IntegrityError,
         r"SpecRecorded for 'm': spec_digest '0{64}' is not the digest of its spec"),
    ],
)
def test_events_the_projections_refuse_roll_the_append_back(store, events, error, message):
    store.append("m", [spec_event(SPEC_A), version_event(1, SPEC_A)])
    before = (store.events(), _dump(store))
    with pytest.raises(error, match=message):
        store.append("m", events)
    assert (store.events(), _dump(store)) == before
    assert store.stream_version("m") == 2


def test_rebuild_without_a_projector_is_refused(make_store):
    store = make_store()
    store.projector = None
    with pytest.raises(errors.RegistryError, match="this EventStore has no projector to rebuild"):
        store.rebuild_projections()


def test_a_version_without_a_spec_on_a_new_stream_is_refused_as_never_recorded(store):
    """A model with no spec yet has no spec digest to match: the version's (None) is looked up, not taken."""
    event = version_event(1, SPEC_A)
    event.payload["spec_digest"] = None
    with pytest.raises(errors.NotFoundError, match="spec None was never recorded"):
        store.append("fresh", [event])
    assert store.events() == []
