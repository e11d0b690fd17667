"""``rlreg demo``, the README's main job, run twice in a row on the embedded default."""

from __future__ import annotations

import re


def test_first_run_trains_snapshots_aliases_and_loads_best_back(demo_runs):
    out = demo_runs.first.out
    returns = [float(r) for r in re.findall(r"iteration\s+\d+\s+mean return\s+([\d.]+)", out)]
    assert len(returns) == 24, out
    # real training: the policy gets better (seeded; CartPole's random policy averages ~20)
    assert sum(returns[-4:]) / 4 > 2 * sum(returns[:4]) / 4, returns
    snapshots = re.findall(r"-> snapshot cartpole-ppo:(\d+)", out)
    assert snapshots == ["1", "2", "3", "4", "5", "6"], out
    best = int(re.search(r"alias best -> version (\d+)", out).group(1))
    assert best in range(1, 7)
    assert "256/256 greedy actions match" in out and "logits identical: True" in out
    table = out[out.index("VERSION  CREATED"):out.index("diff cartpole-ppo")]
    rows = [line.split()[0] for line in table.splitlines()[1:] if line.strip()]
    assert rows == ["1", "2", "3", "4", "5", "6"]
    assert "diff cartpole-ppo 5 6:" in out and "tensors: 8 changed" in out
    assert "metadata  iteration: 20 -> 24" in out


def test_second_run_resumes_and_appends_new_versions(demo_runs):
    summary = demo_runs.second.json()
    assert "resuming cartpole-ppo from version 6" in demo_runs.second.err
    assert f"registry: sqlite:///{demo_runs.rlreg.home / 'rlreg.db'} + " in demo_runs.second.err
    assert summary["snapshots"] == [7, 8]
    assert summary["best"] in (7, 8)
    assert summary["check"] == {"observations": 256, "matching_actions": 256, "identical_logits": True}
    assert [v["version"] for v in summary["versions"]] == list(range(1, 9))
    assert [v["metadata"]["iteration"] for v in summary["versions"]][-2:] == [28, 32]
    best = [v for v in summary["versions"] if "best" in v["aliases"]]
    assert [v["version"] for v in best] == [summary["best"]]
    assert summary["diff"]["a"] == 7 and summary["diff"]["b"] == 8
    assert summary["diff"]["changed"] and not summary["diff"]["added"]


def test_best_alias_is_the_best_snapshot_of_the_run(demo_runs):
    summary = demo_runs.second.json()
    mine = [v for v in summary["versions"] if v["version"] in summary["snapshots"]]
    top = max(mine, key=lambda v: v["metadata"]["mean_return"])
    assert summary["best"] == top["version"]


def test_demo_on_explicit_urls_resolves_rlreg_uris_there(rlreg, tmp_path):
    db = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    blobs = str(tmp_path / "elsewhere-blobs")
    summary = rlreg("demo", "--db", db, "--storage", blobs, "--iterations", "2", "--every", "1",
                    "--name", "elsewhere/ppo", "--json").json()
    assert summary["snapshots"] == [1, 2] and summary["check"]["identical_logits"] is True
    assert not (rlreg.home / "rlreg.db").exists()  # nothing went to the default registry
    assert any((tmp_path / "elsewhere-blobs" / "objects").iterdir())
