"""The snapshots benchmark on a tiny module: every ratio row measured, with its target where issue 12 sets one."""

from __future__ import annotations

from bench import snapshots


def test_rows_carry_each_ratio_and_target(tmp_path):
    case = snapshots.Case("tiny", 3, 1000, tmp_path / "case")
    try:
        rows = snapshots.snapshot_rows(case, 1) + snapshots.load_rows(case, 1)
    finally:
        case.close()
    by_metric = {r["metric"]: r for r in rows}
    targets = {
        "block=False: caller blocked / memcpy": "<= 1.5",
        "load / (build + load_file + load_state_dict)": "<= 0.5",
        "rlreg:// restore_from_path / load": "<= 1.2",
    }
    for metric, target in targets.items():
        assert by_metric[metric]["target"] == target and by_metric[metric]["value"] > 0
    assert "snapshot / (save_file + fsync)" in by_metric
    assert "durable cost: snapshot / snapshot not durable" in by_metric
    table = snapshots.format_table([{"suite": "snapshots", **r} for r in rows], (0.0, 0.0))
    assert "rlreg:// restore_from_path / load" in table and ("ok" in table or "MISSED" in table)
