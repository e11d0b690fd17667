"""The anatomy of a snapshot on a tiny module: every step is seen, in the order a snapshot takes them."""

from __future__ import annotations

from bench import anatomy, snapshots


def test_every_step_of_a_snapshot_is_timed_in_order(tmp_path):
    case = snapshots.Case("tiny", 3, 1000, tmp_path / "case")
    try:
        steps = anatomy.timeline(case, 2)
        wrote = anatomy.writes(case, 1)
    finally:
        case.close()
    at = {r["step"]: r for r in steps}
    assert set(at) == {step for step, _ in anatomy.STEPS}, sorted(at)
    order = ["put", "write started", "bytes out", "stored", "commit", "committed", "returned"]
    firsts = [at[s]["first_ms"] for s in order]
    assert firsts == sorted(firsts) and firsts[0] >= 0, dict(zip(order, firsts))
    assert at["sql"]["first_ms"] < at["commit"]["first_ms"]  # (the append's statements, then its commit)
    assert [r["writes"] for r in wrote] == ["store's writes", "one file + fsync"]
    assert all(r["median_ms"] > 0 for r in wrote) and wrote[1]["vs_peer"] == 1.0
    table = anatomy.format_tables(steps, wrote, (0.0, 0.0))
    assert "waits for writes" in table and "one file + fsync" in table


def test_cpu_table_has_each_contender_and_its_what_if_hashes_nothing(tmp_path):
    case = snapshots.Case("tiny", 3, 1000, tmp_path / "case")
    try:
        spent = anatomy.cpu(case, 2)
        recorded = [e.payload["manifest"] for e in case.reg.event_store.read_stream("m") if "manifest" in e.payload]
        manifest, earlier = recorded[-1], recorded[-3]  # (the two rounds' what-if snapshots)
    finally:
        case.close()
    assert [r["contender"] for r in spent] == ["snapshot", "snapshot, hashing free", "save_file + fsync"]
    assert all(r["wall_ms"] > 0 and r["process_cpu_ms"] >= r["thread_cpu_ms"] >= 0 for r in spent), spent
    assert spent[2]["vs_peer"] == 1.0
    # the what-if's tensors are named by counters, not by their bytes: nothing was hashed; and each round's
    # are new, so its objects were written (not found stored from the round before)
    got = [int(t["digest"].removeprefix("blake3:"), 16) for t in manifest["tensors"].values()]
    assert all(g >> 64 == got[0] >> 64 for g in got), manifest
    assert not set(manifest["objects"]) & set(earlier["objects"])  # (new objects: written, not found stored)
    table = anatomy.format_tables([], [], (0.0, 0.0), spent)
    assert "snapshot, hashing free" in table and "all cpu" in table
