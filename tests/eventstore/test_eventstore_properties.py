"""Property: any sequence of appends (right or wrong expected versions) keeps the log dense and streams contiguous."""

from __future__ import annotations

import uuid

import hypothesis.strategies as st
from eventstore_helpers import plain
from hypothesis import HealthCheck, given, settings

from registry import errors

appends = st.lists(
    st.tuples(st.sampled_from("abc"), st.integers(1, 3), st.one_of(st.none(), st.integers(0, 6))),
    min_size=1,
    max_size=12,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=appends)
def test_any_append_sequence_keeps_positions_dense_and_versions_contiguous(store, steps):
    prefix = uuid.uuid4().hex[:8]  # the database is shared by the examples: streams are per example
    start = store.head()
    model: dict[str, int] = {}
    for stream, n, expected in steps:
        name = f"{prefix}-{stream}"
        current = model.get(name, 0)
        try:
            got = store.append(name, plain(n), expected_version=expected)
        except errors.ConflictError as e:
            assert expected is not None and expected != current
            assert f"expected version {expected}, but it is at version {current}" in str(e)
            continue
        assert expected in (None, current)
        assert [e.stream_version for e in got] == list(range(current + 1, current + n + 1))
        model[name] = current + n
    log = store.events(after=start)
    assert [e.position for e in log] == list(range(start + 1, start + len(log) + 1))
    assert len(log) == sum(model.values()) == store.head() - start
    for name, version in model.items():
        assert [e.stream_version for e in store.read_stream(name)] == list(range(1, version + 1))
        assert store.stream_version(name) == version
