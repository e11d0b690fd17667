"""Several writer processes and a tailer: the tailer misses nothing; a sequence-like control misses some."""

from __future__ import annotations

import multiprocessing

from eventstore_helpers import append_worker

from registry.eventstore import EventStore

WRITERS = 4  # the machine has 2 cores
APPENDS = 40


def _tail_while_writing(url: str, naive: bool) -> tuple[int, set[int], int]:
    """Run the writers; tail by advancing ``after`` to the highest position seen. Returns (head, seen, reads)."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WRITERS + 1)
    writers = [
        ctx.Process(target=append_worker, args=(url, naive, f"w{i}", APPENDS, barrier)) for i in range(WRITERS)
    ]
    for p in writers:
        p.start()
    tailer = EventStore(url, check_schema=False)
    seen: set[int] = set()
    after, reads = 0, 0
    try:
        barrier.wait(timeout=60)
        while any(p.is_alive() for p in writers):
            got = tailer.events(after)
            reads += 1
            seen.update(e.position for e in got)
            if got:
                after = max(after, got[-1].position)
        for p in writers:
            p.join()
        assert all(p.exitcode == 0 for p in writers), [p.exitcode for p in writers]
        got = tailer.events(after)
        seen.update(e.position for e in got)
        return tailer.head(), seen, reads
    finally:
        tailer.close()
        for p in writers:
            if p.is_alive():
                p.kill()


def test_a_tailer_misses_nothing_under_concurrent_writer_processes(store, store_url):
    head, seen, reads = _tail_while_writing(store_url, naive=False)
    expected_total = WRITERS * sum(1 + i % 3 for i in range(APPENDS))
    assert head == expected_total
    assert [e.position for e in store.events()] == list(range(1, head + 1)), "positions have holes"
    assert set(range(1, head + 1)) - seen == set(), "the tailer missed events"
    assert reads > WRITERS, "the tailer did not actually tail while writers ran"


def test_control_sequence_like_allocation_fails_the_same_check(store, store_url):
    head, seen, _ = _tail_while_writing(store_url, naive=True)
    missed = set(range(1, head + 1)) - seen
    assert missed, (
        "the naive control missed nothing: the stress run cannot tell a correct allocation from a broken one"
    )
    print(f"naive control: missed {len(missed)} of {head} events")
