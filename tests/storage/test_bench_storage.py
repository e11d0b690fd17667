"""The storage benchmark runs (tiny sizes, one repeat) and its rows carry what the table needs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import SUITES  # noqa: E402
from bench import __main__ as bench_main  # noqa: E402
from bench import storage as storage_bench  # noqa: E402


def test_local_rows_measure_every_metric(tmp_path):
    state = storage_bench.state_dict(64 << 10, 1000)
    rows = storage_bench.local_rows("tiny", state, tmp_path, repeats=1)
    metrics = {r["metric"]: r for r in rows}
    assert metrics["unchanged put: tensor bytes written"]["value"] == 0
    assert metrics["objects"]["value"] <= 20 and metrics["objects"]["target"] == 20
    for name in ("put / save_file", "get / (load_file + touch)", "get µs/tensor"):
        assert metrics[name]["value"] > 0 and "ok" in metrics[name]
    assert "put / save_file" in storage_bench.format_table(rows)


def test_s3_rows_count_requests(s3_server, tmp_path):
    state = storage_bench.state_dict(256 << 10, 4)  # 64 KB tensors: one object each
    rows = {r["metric"]: r["value"] for r in storage_bench.s3_rows("tiny", state, s3_server, tmp_path, repeats=1)}
    assert rows["S3 requests per put"] == 8  # a HEAD and a PUT per object
    assert rows["S3 requests per cold get"] == 4 and rows["S3 requests per warm get"] == 0


def test_dispatcher_knows_storage_and_rejects_unknown(capsys):
    assert SUITES["storage"] == "bench.storage"
    with pytest.raises(SystemExit):
        bench_main.main(["no-such-suite"])
    assert "unknown suite(s) no-such-suite" in capsys.readouterr().err
