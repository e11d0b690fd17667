"""A snapshot whose commit succeeded but whose reply was lost is resent and recorded once."""

from __future__ import annotations

import pytest
from registry import errors
from registry_toys import spec, states_equal, train_step


def _lose_replies(reg, monkeypatch, *, commit: bool, times: int = 1):
    """Make the next ``times`` appends fail with DatabaseUnavailableError, after committing if ``commit``."""
    real = reg.event_store.append
    calls = {"n": 0}

    def flaky(stream, events, expected_version=None, **kwargs):
        calls["n"] += 1
        if calls["n"] <= times:
            if commit:
                real(stream, events, expected_version, **kwargs)
            raise errors.DatabaseUnavailableError("connection lost before the reply (injected)")
        return real(stream, events, expected_version, **kwargs)

    monkeypatch.setattr(reg.event_store, "append", flaky)
    return calls


@pytest.mark.parametrize("committed", [True, False], ids=["commit-then-lost", "failed-before-commit"])
def test_lost_reply_records_the_version_exactly_once(make_registry, monkeypatch, committed):
    reg = make_registry()
    module = spec().build()
    first = reg.snapshot("lost/reply", module)
    head = reg.event_store.head()

    calls = _lose_replies(reg, monkeypatch, commit=committed)
    train_step(module, seed=2)
    second = reg.snapshot("lost/reply", module, metadata={"step": 2})

    assert calls["n"] == 2, "the append is resent once after the lost reply"
    assert second.version == first.version + 1
    assert reg.event_store.head() == head + 1, "one VersionRecorded event, not two"
    assert [v.version for v in reg.versions("lost/reply")] == [1, 2]
    assert states_equal(reg.load("lost/reply", 2), module)


def test_a_database_that_stays_down_raises_and_records_nothing(make_registry, monkeypatch):
    reg = make_registry()
    module = spec().build()
    reg.snapshot("lost/down", module)
    head = reg.event_store.head()
    _lose_replies(reg, monkeypatch, commit=False, times=100)
    with pytest.raises(errors.DatabaseUnavailableError, match="injected"):
        reg.snapshot("lost/down", module)
    monkeypatch.undo()
    assert reg.event_store.head() == head
    assert [v.version for v in reg.versions("lost/down")] == [1]
