"""``progress(done, total)`` of put, get and verify: total known up front, monotonic, at most once per object."""

from __future__ import annotations

import threading

import pytest
import torch

from storage import Store


class Recorder:
    """A progress callback that records its calls and the threads they came from."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            self.calls.append((done, total))
            self.threads.add(threading.current_thread().name)

    def check(self, total: int, objects: int) -> None:
        """Starts at (0, total), never goes back, ends at (total, total), at most one call per object more, all
        on the thread of the operation (this one)."""
        assert self.calls[0] == (0, total)
        assert self.calls[-1] == (total, total)
        assert {t for _, t in self.calls} == {total}
        dones = [d for d, _ in self.calls]
        assert dones == sorted(dones), dones
        assert len(self.calls) <= objects + 1, self.calls
        assert self.threads == {threading.current_thread().name}, self.threads  # the caller's only


def state() -> dict[str, torch.Tensor]:
    """Large tensors (objects of their own, one named twice) and small ones (packed)."""
    torch.manual_seed(0)
    big = torch.randn(40_000)
    out = {f"layer{i}.weight": torch.randn(30_000 + i) for i in range(12)}
    out |= {f"layer{i}.bias": torch.randn(i + 1) for i in range(12)}
    return out | {"shared.a": big, "shared.b": big, "step": torch.tensor(7)}


def tensor_bytes(m) -> int:
    return sum(e["nbytes"] for e in m["tensors"].values())


def object_bytes(m) -> int:
    return sum(o["nbytes"] for o in m["objects"].values())


def test_put_counts_tensor_bytes_written_and_already_stored(store):
    first, again = Recorder(), Recorder()
    m = store.put(state(), progress=first)
    first.check(tensor_bytes(m), len(m["objects"]) + 1)  # (+1: the second name of the shared tensor)
    assert store.put(state(), progress=again) == m  # nothing written: every object found stored
    again.check(tensor_bytes(m), len(m["objects"]) + 1)


def test_get_counts_the_bytes_of_the_objects_read(store, store_url, tmp_path):
    m = store.put(state())
    fresh = Store(store_url, cache_dir=str(tmp_path / "fresh-cache"))  # nothing cached: every object read
    cold, warm = Recorder(), Recorder()
    got = fresh.get(m, progress=cold)
    assert torch.equal(got["shared.b"], state()["shared.b"])
    cold.check(object_bytes(m), len(m["objects"]))
    fresh.get(m, progress=warm)  # from the cache (remote) or read in place again
    warm.check(object_bytes(m), len(m["objects"]))


def test_get_of_some_names_counts_only_their_objects(store):
    m = store.put(state())
    rec = Recorder()
    store.get(m, names=["layer3.weight"], progress=rec)
    obj = m["tensors"]["layer3.weight"]["object"]
    rec.check(m["objects"][obj]["nbytes"], 1)


def test_verify_counts_every_stored_object(store):
    m = store.put(state())
    whole, some = Recorder(), Recorder()
    assert store.verify(progress=whole).ok
    whole.check(object_bytes(m), len(m["objects"]))
    two = sorted(m["objects"])[:2]
    assert store.verify(two, progress=some).checked == 2
    some.check(sum(m["objects"][o]["nbytes"] for o in two), 2)


def test_verify_of_an_empty_store_reports_zero_of_zero(store):
    rec = Recorder()
    assert store.verify(progress=rec).checked == 0
    assert rec.calls == [(0, 0)]


@pytest.mark.s3
def test_concurrent_uploads_report_in_order(s3_bucket, tmp_path):
    """Objects complete on several upload threads at once; the calls still never go back, and all come on
    the caller's thread (none from an upload thread or the event loop)."""
    store = Store(s3_bucket + "/many", cache_dir=str(tmp_path / "cache"))
    tensors = {f"w{i}": torch.full((20_000,), float(i)) for i in range(24)}
    rec = Recorder()
    m = store.put(tensors, progress=rec)
    rec.check(tensor_bytes(m), len(m["objects"]))
    assert rec.threads == {threading.current_thread().name}, rec.threads


def test_a_large_upload_advances_per_chunk_not_per_object(s3_bucket, tmp_path):
    import numpy as np

    from storage import Store

    calls = []
    store = Store(f"{s3_bucket}/chunks", cache_dir=str(tmp_path / "cache"))
    big = np.arange(27 << 20, dtype=np.float32)  # 108 MiB: one object, above two s3fs blocks (multipart)
    store.put({"big": big}, progress=lambda done, total: calls.append((done, total)))
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and dones[-1] == big.nbytes
    assert len([d for d in dones if 0 < d < big.nbytes]) >= 3, calls  # 8 MiB steps before the end


def test_a_small_tensor_under_many_names_counts_once_its_pack_is_stored(tmp_path, monkeypatch):
    """Second names of a packed tensor are progress when the pack holding it is stored, not before."""
    import time

    from storage import filesystems

    real = filesystems.local_atomic_write
    written = []

    def slow_write(path, buffers, **kwargs):
        time.sleep(0.2)
        real(path, buffers, **kwargs)
        written.append(path)

    monkeypatch.setattr(filesystems, "local_atomic_write", slow_write)
    store = Store(tmp_path / "store")
    t = torch.zeros(8192)  # 32 KiB: packed
    calls = []
    pending = store.begin_put({f"layer{i:03d}.bias": t for i in range(100)},
                              progress=lambda done, total: calls.append((done, total, len(written))))
    assert all(done == 0 for done, _, n in calls if n == 0)  # nothing counted before the pack is stored
    pending.wait()
    assert calls[-1][:2] == (100 * t.nbytes, 100 * t.nbytes)


def test_a_count_added_on_another_thread_is_reported_on_the_operations_thread_while_it_waits():
    """Work ending on a writer thread is counted there and reported by the thread waiting for it: the
    callback never runs on the writer (before, a callback that waited for other work of the store held
    the writer threads that work needed)."""
    import concurrent.futures

    from storage.progress import Progress

    calls: list[tuple[int, str]] = []
    progress = Progress(lambda done, total: calls.append((done, threading.current_thread().name)), 3)
    progress.start()
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="writer") as writers:
        futures = [writers.submit(progress.add, 1) for _ in range(3)]
        progress.wait(futures)
    here = threading.current_thread().name
    assert calls[0] == (0, here) and calls[-1] == (3, here), calls
    assert {t for _, t in calls} == {here}, calls


def test_waiting_wakes_for_a_count_added_later_and_reports_it_before_returning():
    """A writer that counts while the caller waits wakes the wait (a report before the work ends), and the
    last count added before the work ended is reported before ``wait`` returns."""
    import concurrent.futures

    from storage.progress import Progress

    reported, go_on = threading.Event(), threading.Event()
    calls: list[int] = []

    def callback(done: int, total: int) -> None:
        calls.append(done)
        if done == 1:
            reported.set()

    def work() -> None:
        progress.add(1)
        assert go_on.wait(10)  # ends only once the first count was reported
        progress.add(2)

    progress = Progress(callback, 3)
    with concurrent.futures.ThreadPoolExecutor(1) as writers:
        future = writers.submit(work)
        waiter = threading.Thread(target=lambda: (reported.wait(10), go_on.set()))
        waiter.start()
        progress.wait([future])
        waiter.join(10)
    assert calls == [1, 3], calls
    future.result()


def test_a_put_waited_for_on_another_thread_reports_there_to_the_end(tmp_path):
    """``PendingPut.wait()`` on a thread other than ``begin_put``'s: the thread that waits reports (the
    second names of packed tensors, counted at the end, were never reported)."""
    store = Store(tmp_path / "store")
    t = torch.zeros(1024)  # packed: 99 second names
    calls: list[tuple[int, int, str]] = []
    pending = store.begin_put({f"b{i:03d}": t for i in range(100)},
                              progress=lambda done, total: calls.append((done, total, threading.current_thread().name)))
    waiter = threading.Thread(target=pending.wait, name="waiter")
    waiter.start()
    waiter.join(30)
    assert calls[-1] == (100 * t.nbytes, 100 * t.nbytes, "waiter"), calls


def test_a_large_local_put_reports_while_its_writes_are_handed_over(tmp_path, monkeypatch):
    """The caller waits until each write is under way (``_hand_over``) before it goes on: it reported
    nothing meanwhile, so a bar stood still for most of the write, then jumped to the end."""
    import time

    from storage import filesystems

    store = Store(tmp_path / "store")
    store.put({"warm": torch.zeros(10)})  # (the object folders made)
    real = filesystems.local_atomic_write

    def slow_write(path, buffers, **kwargs):
        time.sleep(0.1)  # eight writers, 48 objects: the last write starts about 0.5 s in
        real(path, buffers, **kwargs)

    monkeypatch.setattr(filesystems, "local_atomic_write", slow_write)
    tensors = {f"w{i:02d}": torch.full((70_000,), float(i)) for i in range(48)}  # 13 MB: writer threads
    calls: list[int] = []
    store.put(tensors, progress=lambda done, total: calls.append(done))
    total = sum(t.nbytes for t in tensors.values())
    assert calls[-1] == total
    assert any(0 < done < total // 2 for done in calls), calls  # reported as the first writes ended
