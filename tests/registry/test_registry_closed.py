"""A ``Registry`` used after ``close()`` raises ``ClosedError``: it never connects again behind the
caller's back, and nothing is recorded (a closed file refuses its reads and writes the same way)."""

from __future__ import annotations

import pytest
import registry_toys as toys

import registry
from registry import ClosedError, Registry


@pytest.fixture
def closed(make_registry) -> Registry:
    reg = make_registry()
    reg.snapshot("pol", toys.spec().build())
    reg.set_alias("pol", "best", 1)
    reg.load("pol", alias="best")  # a kept read (SQLite) must not be served after close either
    reg.close()
    return reg


USES = {
    "models": lambda r: r.models(),
    "versions": lambda r: r.versions("pol"),
    "load by alias": lambda r: r.load("pol", alias="best"),
    "load by number": lambda r: r.load("pol", 1),
    "tensors": lambda r: r.tensors("pol", 1),
    "events": lambda r: r.events(),
    "follow": lambda r: next(iter(r.follow(timeout=1))),
    "head": lambda r: r.head(),
    "snapshot": lambda r: r.snapshot("pol", toys.spec().build()),
    "snapshot block=False": lambda r: r.snapshot("pol", toys.spec().build(), block=False).result(),
    "register": lambda r: r.register("other", toys.spec()),
    "set_alias": lambda r: r.set_alias("pol", "best", 1),
    "set_tags": lambda r: r.set_tags("pol", 1, {"k": "v"}),
    "delete_version": lambda r: r.delete_version("pol", 1, reason="closed test", force=True),
    "verify": lambda r: r.verify(),
}


@pytest.mark.parametrize("use", list(USES))
def test_every_use_after_close_raises_closed_error_and_records_nothing(closed, use, local_storage_url):
    head_before = Registry(closed.db_url, local_storage_url)
    try:
        before = head_before.head()
    finally:
        head_before.close()
    with pytest.raises(ClosedError, match=r"the registry at .* was closed .* open a new one"):
        USES[use](closed)
    assert closed.closed
    with Registry(closed.db_url, local_storage_url) as fresh:
        assert fresh.head() == before
        assert [v.version for v in fresh.versions("pol")] == [1]


def test_close_twice_and_a_with_block(make_registry):
    reg = make_registry()
    assert not reg.closed
    with reg:
        reg.register("pol", toys.spec())
    assert reg.closed
    reg.close()  # again: nothing to do
    with pytest.raises(ClosedError):
        reg.models()
    assert isinstance(ClosedError("x"), (registry.RegistryError, ValueError))


def test_the_default_registry_is_opened_again_once_closed(default_env):
    first = registry.default_registry()
    registry.register("pol", toys.spec())
    first.close()
    again = registry.default_registry()
    assert again is not first and not again.closed
    assert [m.name for m in registry.models()] == ["pol"]
