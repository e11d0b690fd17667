"""A loaded or restored module is what ``build()`` + ``set_state`` would make, and its own.

Each test builds a module its load once got wrong: a tensor held deeper than an attribute left on
the meta device, a ``load_state_dict`` hook not run, a JSON list of the state shared with the
registry's kept parse (and so with every later load), a buffer viewing a parameter cut loose from
it. And the process-wide caches a load goes through, filled and evicted by several threads at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest
import registry_toys as toys
import torch

from registry import Registry
from storage import Store, objects


@pytest.fixture
def sqlite_reg(sqlite_url, tmp_path):
    reg = Registry(sqlite_url, str(tmp_path / "blobs"), cache_dir=str(tmp_path / "cache"))
    yield reg
    reg.close()


def _twice(reg: Registry, name: str):
    """Two loads: the first builds on meta (``replay``), the second copies the kept build (``templates``)."""
    return [reg.load(name) for _ in range(2)]


def test_a_tensor_held_deeper_than_an_attribute_is_loaded_not_left_on_meta(sqlite_reg):
    m = toys.spec(module_class=toys.DeepTensorPolicy).build()
    sqlite_reg.snapshot("deep", m)
    for loaded in _twice(sqlite_reg, "deep"):
        assert loaded.table.t.device.type == "cpu" and torch.equal(loaded.table.t, m.table.t)
        assert loaded.nested["scales"][0].device.type == "cpu" and torch.equal(loaded.nested["scales"][0], m.nested["scales"][0])
        assert toys.states_equal(loaded, m)


def test_a_load_runs_the_modules_load_state_dict_hooks(sqlite_reg):
    m = toys.spec(module_class=toys.LoadHookPolicy).build()
    sqlite_reg.snapshot("hooked", m)
    expected = float(m.net[0].weight.detach().norm())
    for loaded in _twice(sqlite_reg, "hooked"):
        assert loaded.norm_cache == expected


def test_a_loaded_modules_json_state_is_its_own(sqlite_reg):
    m = toys.spec(module_class=toys.HistoryPolicy).build()
    m.history = [1, [2, 3]]
    sqlite_reg.snapshot("h", m)
    for loaded in _twice(sqlite_reg, "h"):
        assert loaded.history == [1, [2, 3]]
        loaded.history.append(99)  # the module goes on recording, as it did before the snapshot
        loaded.history[1].append(4)
    assert sqlite_reg.state("h", 1)["history"] == [1, [2, 3]]
    sqlite_reg.state("h", 1)["history"].append(5)
    assert sqlite_reg.load("h", 1).history == [1, [2, 3]]


def test_the_offline_record_keeps_the_state_as_stored(sqlite_url, tmp_path, monkeypatch):
    from registry import offline

    monkeypatch.setattr(offline, "SIGHTING_REFRESH", 0.0)  # each load writes its records again
    cache = str(tmp_path / "cache")
    with Registry(sqlite_url, str(tmp_path / "blobs"), cache_dir=cache) as reg:
        m = toys.spec(module_class=toys.HistoryPolicy).build()
        m.history = [1, 2, 3]
        reg.snapshot("h", m)
        reg.load("h").history.append(99)
        reg.load("h")  # records the version for offline loads again
    with Registry(sqlite_url, str(tmp_path / "blobs"), cache_dir=cache, offline=True) as off:
        assert off.load("h", 1).history == [1, 2, 3]
        loaded = off.load("h", 1)
        loaded.history.append(7)
        assert off.load("h", 1).history == [1, 2, 3]


def test_a_buffer_viewing_a_parameter_still_views_it_after_a_load(sqlite_reg):
    m = toys.spec(module_class=toys.ViewBufferPolicy).build()
    sqlite_reg.snapshot("view", m)
    for loaded in _twice(sqlite_reg, "view"):
        assert torch.equal(loaded.row0, m.net[0].weight.detach()[0])
        with torch.no_grad():
            loaded.net[0].weight[0, 0] += 1
        assert loaded.row0[0] == loaded.net[0].weight[0, 0], "the buffer no longer sees the weight"


@pytest.mark.parametrize("policy", ["HiddenViewBufferPolicy", "DroppedViewPolicy"])
def test_a_restore_keeps_a_view_of_a_parameter_outside_the_state(sqlite_reg, policy):
    """``restore_from_path`` gives a parameter the checkpoint's memory (no copy) only where nothing else
    holds its old memory: here a buffer outside the state views it (non-persistent; or persistent and
    left out by a state_dict hook, which makes the whole module copied into), and sees the values."""
    spec = toys.spec(2048, module_class=getattr(toys, policy))  # net[0].weight: 72 KiB, an object of its own
    src = spec.build()
    with torch.no_grad():
        src.net[0].weight.add_(1.0)
    sqlite_reg.snapshot("w", src)
    restored = spec.build()
    with sqlite_reg.bind():
        restored.restore_from_path("rlreg://w/1")
    assert torch.equal(restored.net[0].weight, src.net[0].weight)
    assert torch.equal(restored.row0, restored.net[0].weight[0].detach()), "the view kept the constructor's values"


@pytest.fixture
def switching_often():
    """Threads switch every microsecond: a race a few bytecodes wide shows within a few hundred calls."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _in_threads(work, n: int = 6) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            work(k)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_reads_evicting_parsed_headers(tmp_path, monkeypatch, switching_often):
    monkeypatch.setattr(objects, "_PARSED", objects._Parsed(2))  # (1024: as many objects read at once)
    store = Store(str(tmp_path / "blobs"), durable=False)
    manifests = [store.put({"t": torch.full((4,), float(i))}) for i in range(24)]

    def work(k: int) -> None:
        for r in range(1000):
            got = store.get(manifests[(k * 7 + r) % 24])
            assert got["t"][0] == (k * 7 + r) % 24

    assert _in_threads(work) == []


def test_concurrent_loads_recording_for_offline(sqlite_reg, monkeypatch, switching_often):
    from storage import records

    monkeypatch.setattr(records, "_REMEMBERED", 4)  # (256: as many records, written at once)
    m = toys.spec().build()
    for v in range(1, 9):
        sqlite_reg.snapshot("m", m)
        sqlite_reg.set_alias("m", f"a{v}", v)

    def work(k: int) -> None:
        for r in range(40):
            v = (k * 3 + r) % 8 + 1
            assert sqlite_reg.load("m", alias=f"a{v}") is not None

    assert _in_threads(work) == []


def test_a_big_plain_list_beside_the_parameters_keeps_the_kept_build():
    """The walk looks at numbers without counting them towards its limit: a 300,000-number list (a table
    of constants) made every load of the module build it the ordinary way."""
    from registry import replay

    m = toys.spec().build()
    m.table_of_numbers = list(range(300_000))
    assert replay._only_registered_tensors(m)
    m.table_of_numbers.append(torch.zeros(1))  # a tensor at its end is still found
    assert not replay._only_registered_tensors(m)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_child_forked_while_a_thread_held_a_cache_lock_reads(tmp_path):
    from storage import records

    store = Store(str(tmp_path / "blobs"), durable=False)
    manifest = store.put({"t": torch.arange(4.0)})
    cache = records.RecordCache(str(tmp_path / "records"))
    with objects._PARSED._lock, cache._lock:  # as a thread of the parent in the middle of a put
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            signal.alarm(20)
            try:
                ok = store.get(manifest)["t"][3] == 3 and cache.put(["k"], 1)
                os._exit(0 if ok else 2)
            finally:
                os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert status == 0, "the child hung on a lock its parent held when it forked"


class _Slotted:
    __slots__ = ("__t",)

    def __init__(self, t):
        self.__t = t


class _Tagged(str):
    pass


@pytest.mark.parametrize("holder", ["deque", "mappingproxy", "private slot", "str subclass"])
def test_the_walk_finds_a_tensor_in(holder):
    import collections
    import types

    from registry import replay

    t = torch.zeros(1)
    tagged = _Tagged("x")
    tagged.t = t
    value = {"deque": collections.deque([t]), "mappingproxy": types.MappingProxyType({"k": t}),
             "private slot": _Slotted(t), "str subclass": tagged}[holder]
    assert replay.reaches(value, lambda obj: obj is t)



@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_child_forked_while_a_thread_held_the_registrys_cache_lock_loads(sqlite_reg):
    sqlite_reg.snapshot("m", toys.spec().build())
    with sqlite_reg._versions_json._lock, sqlite_reg._loaded_rows._lock:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            signal.alarm(20)
            try:
                sqlite_reg.load("m", 1)
                os._exit(0)
            finally:
                os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert status == 0, "the child hung on a lock its parent held when it forked"
