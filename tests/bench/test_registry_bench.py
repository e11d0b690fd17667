"""The registry benchmark on tiny sizes (`--quick`): every row well-formed, ratios and targets consistent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench import registry as registry_bench
from bench.peers import venv
from bench.registry_table import OURS_LOAD, OURS_SNAPSHOT, TIME_TARGETS, finish, format_table

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {"suite": str, "case": str, "system": str, "metric": str, "unit": str}
CASES = ("snapshot", "load", "repeated snapshots")
PEER_SYSTEMS = {
    "snapshot": {"safetensors save_file", "safetensors save_file + fsync", "torch.save", "RLlib save_to_path", "RLlib save_to_path + fsync",
                 "MLflow log_model + register"},
    "load": {"build + safetensors load_file", "build + torch.load", "RLlib build + restore_from_path",
             "RLlib RLModule.from_checkpoint", "MLflow load_model"},
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run of the suite from the command line: (the rows it wrote as JSON, what it printed).

    The peers' venv is pointed at a missing folder, as on a machine where they cannot be installed
    (test_peers_measure_an_equal_module runs them when they are).
    """
    tmp = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "RLREG_PEERS_VENV": str(tmp / "no-peers")}
    done = subprocess.run([sys.executable, "-m", "bench.registry", "--quick", "--no-eventstore",
                           "--json", str(tmp / "rows.json")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "registry bench: skipping rllib: " in done.stderr
    return json.loads((tmp / "rows.json").read_text()), done.stdout


def _registry_rows(rows):
    return [r for r in rows if r["suite"] == "registry"]


def _one(rows, case, system):
    found = [r for r in rows if r["case"] == case and r["system"] == system]
    assert len(found) == 1, f"{len(found)} rows for {case!r} / {system!r}"
    return found[0]


def test_every_row_is_well_formed_and_json(quick_run):
    rows, _ = quick_run
    assert json.loads(json.dumps(rows)) == rows
    for r in rows:
        for key, kind in REQUIRED.items():
            assert isinstance(r.get(key), kind), f"row {r} lacks {key!r} ({kind.__name__})"
        if r.get("value") is None:
            assert isinstance(r.get("skipped"), str) and r["skipped"], f"row {r} has no value nor reason"
        else:
            assert isinstance(r["value"], (int, float)) and r["value"] >= 0, r
        if r["suite"] == "registry" and r["metric"] == "seconds" and r["value"] is not None:
            assert 0 < r["best"] <= r["value"] and r["runs"] == registry_bench.SIZES[True]["repeats"], r


def test_rlreg_and_in_process_peers_are_measured(quick_run):
    rows = _registry_rows(quick_run[0])
    for case in ("snapshot", "load"):
        for system in ({OURS_SNAPSHOT if case == "snapshot" else OURS_LOAD}
                       | {s for s in PEER_SYSTEMS[case] if "RLlib" not in s and "MLflow" not in s}):
            assert _one(rows, case, system)["value"] > 0
    for system in ("rlreg Registry(...).load", "build + safetensors load_file"):
        assert _one(rows, "first load in a new process", system)["value"] > 0
    ours = _one(rows, "snapshot", OURS_SNAPSHOT)
    assert ours["params"] > 0 and ours["state_bytes"] >= 4 * ours["params"]


def test_every_peer_is_measured_or_skipped_with_a_reason(quick_run):
    rows = _registry_rows(quick_run[0])
    for case, systems in PEER_SYSTEMS.items():
        for system in systems:
            r = _one(rows, case, system)
            assert r["value"] is not None or r["skipped"], r
    assert "RLlib save_to_path" in quick_run[1] and "skipped: " in quick_run[1]


def test_peers_measure_an_equal_module():
    if not venv.peers_python().exists():
        pytest.skip(f"{venv.peers_python().parent.parent} missing: run `bash bench/peers/setup.sh`")
    config = registry_bench.SIZES[True]
    ours = registry_bench.ppo_spec(config).build()
    params = sum(p.numel() for p in ours.parameters())
    with ThreadPoolExecutor(len(venv.PEERS)) as pool:  # both at once: quick sizes, timings unused
        rows = [r for rs in pool.map(lambda p: venv.run_peer(p, config, 300), venv.PEERS) for r in rs]
    assert {r["system"] for r in rows} == {s for _, saves, loads in venv.PEERS.values() for s in saves + loads}
    for r in rows:
        assert "skipped" not in r, r["skipped"]
        assert r["value"] > 0 and r.get("params", params) == params, r
    for r in (r for r in rows if r["case"] == "repeated snapshots"):
        assert r["changed_bytes"] > 0 and r["value"] >= r["changed_bytes"]


def test_ratios_and_targets_follow_from_the_values(quick_run):
    rows = _registry_rows(quick_run[0])
    for case, (ours_system, base_system, limit) in TIME_TARGETS.items():
        ours, base = _one(rows, case, ours_system), _one(rows, case, base_system)
        assert ours["target_ratio"] == pytest.approx(ours["value"] / base["value"])
        assert ours["ok"] is (ours["target_ratio"] <= limit)
        assert base["rlreg_over_this"] == pytest.approx(ours["value"] / base["value"])
    for r in (r for r in rows if r["case"] == "repeated snapshots" and r["value"] is not None):
        assert r["changed_bytes"] > 0 and r["snapshots"] == registry_bench.SIZES[True]["snapshots"] - 1
        assert r["seconds_each"] > 0
        assert r["written_over_changed"] == pytest.approx(r["value"] / r["changed_bytes"])


def test_both_peer_targets_follow_from_the_values():
    """rlreg's snapshot against RLlib's save_to_path, and against it + fsync (durable like rlreg's)."""
    def timing(system, value):
        return {"case": "snapshot", "system": system, "metric": "seconds", "unit": "s", "value": value}

    rows = finish([timing(OURS_SNAPSHOT, 0.3), timing("RLlib save_to_path", 0.1),
                   timing("RLlib save_to_path + fsync", 0.2), timing("safetensors save_file", 0.25)], {})
    ours = _one(rows, "snapshot", OURS_SNAPSHOT)
    assert ours["peer_targets"] == [
        {"target": "<= 2 x RLlib save_to_path", "ratio": pytest.approx(3.0), "ok": False},
        {"target": "<= 2 x RLlib save_to_path + fsync", "ratio": pytest.approx(1.5), "ok": True},
    ]
    printed = format_table(rows, registry_bench.SIZES[True], quick=True)
    assert "<= 2 x RLlib save_to_path: 3.00 MISSED; <= 2 x RLlib save_to_path + fsync: 1.50 ok" in printed


def test_the_table_names_every_system_and_target(quick_run):
    rows, printed = quick_run
    for r in _registry_rows(rows):
        assert r["system"] in printed
    assert "<= 1.5 x safetensors save_file + fsync" in printed
    assert "<= 1 x build + safetensors load_file" in printed
    assert "written/changed" in printed


def test_a_missing_peers_venv_skips_each_peer_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("RLREG_PEERS_VENV", str(tmp_path / "nowhere"))
    rows = venv.run_peer("mlflow", registry_bench.SIZES[True], timeout=60)
    assert [(r["case"], r["value"]) for r in rows] == [(c, None) for c in CASES]
    fix = "(run `bash bench/peers/setup.sh`; `make bench` does)"
    for r in rows:
        assert r["skipped"] == f"{tmp_path / 'nowhere'} does not exist {fix}"


def test_a_venv_without_the_peer_names_the_missing_module(tmp_path, monkeypatch):
    fake = tmp_path / "venv"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "python").symlink_to(os.path.realpath(sys.executable))  # bare Python: no torch
    monkeypatch.setenv("RLREG_PEERS_VENV", str(fake))
    rows = venv.run_peer("rllib", registry_bench.SIZES[True], timeout=60)
    assert {r["system"] for r in rows} == {"RLlib save_to_path", "RLlib save_to_path + fsync",
                                           "RLlib build + restore_from_path", "RLlib RLModule.from_checkpoint"}
    for r in rows:
        assert r["value"] is None
        assert r["skipped"] == (f"not installed in {fake}: ModuleNotFoundError: "
                                "No module named 'torch' (see its install.log)")
