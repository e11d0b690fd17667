"""Read-only commands on the registry the demo filled: tables for people, --json for machines."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def rlreg_demo(demo_runs):
    return demo_runs.rlreg


@pytest.fixture(scope="module")
def inproc(demo_inproc):
    return demo_inproc


@pytest.fixture(scope="module")
def best(demo_runs) -> int:
    return demo_runs.second.json()["best"]


def test_models_table_and_json(rlreg_demo, inproc, best):
    text = inproc("models").out.splitlines()
    assert text[0].split() == ["NAME", "VERSIONS", "LATEST", "ALIASES", "UPDATED", "(UTC)"]
    assert text[1].split()[:4] == ["cartpole-ppo", "8", "8", f"best={best}"]
    [info] = rlreg_demo("models", "--json").json()
    assert info["name"] == "cartpole-ppo" and info["versions"] == 8 and info["latest_version"] == 8
    assert info["aliases"] == {"best": best}


def test_versions_table_and_json(rlreg_demo, inproc, best):
    lines = inproc("versions", "cartpole-ppo").out.splitlines()
    assert lines[0].split()[:3] == ["VERSION", "CREATED", "(UTC)"]
    assert [line.split()[0] for line in lines[1:]] == [str(v) for v in range(1, 9)]
    assert "best" in lines[best]
    rows = rlreg_demo("versions", "cartpole-ppo", "--json").json()
    assert [r["version"] for r in rows] == list(range(1, 9))
    assert all(isinstance(r["metadata"]["mean_return"], float | int) for r in rows)
    assert {r["tensor_bytes"] for r in rows} == {18708}  # incl. the two 4-byte log_std_clip_param_const buffers


def test_show_by_alias_version_and_latest(rlreg_demo, inproc, best):
    text = inproc("show", "cartpole-ppo@best").out
    assert f"version:      {best}" in text
    assert "observation space: Box(shape=(4,), dtype=float32)" in text
    assert "action space:      Discrete(2)" in text
    assert "model config:      {\"hidden\": [64, 64]}" in text
    assert "encoder.encoder.net.mlp.2.weight  float32  64x64  16384" in text
    shown = rlreg_demo("show", "cartpole-ppo:3", "--json").json()
    assert shown["version"]["version"] == 3 and shown["version"]["metadata"]["iteration"] == 12
    assert shown["spec"]["module_class"].endswith("PPOTorchRLModule")
    weight = shown["tensors"]["encoder.encoder.net.mlp.0.weight"]
    assert (weight["dtype"], weight["shape"], weight["nbytes"]) == ("float32", [64, 4], 1024)
    latest = inproc("show", "cartpole-ppo", "--json").json()
    assert latest["version"]["version"] == 8


def test_history_is_the_stream_in_order(rlreg_demo, inproc, best):
    events = rlreg_demo("history", "cartpole-ppo", "--json").json()
    types = [e["type"] for e in events]
    assert types[0] == "SpecRecorded"
    assert types.count("VersionRecorded") == 8 and types.count("AliasSet") == 2
    assert [e["stream_version"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["payload"] == {"alias": "best", "version": best}
    table = inproc("history", "cartpole-ppo").out.splitlines()
    assert table[0].split()[:4] == ["POSITION", "STREAM", "SEQ", "TYPE"]
    assert len(table) == len(events) + 1


def test_events_after_and_limit(rlreg_demo, inproc):
    events = rlreg_demo("events", "--after", "3", "--limit", "4", "--json").json()
    assert [e["position"] for e in events] == [4, 5, 6, 7]
    assert all(set(e) >= {"position", "stream", "stream_version", "type", "payload", "timestamp", "id"}
               for e in events)
    assert inproc("events", "--after", "1000").out.strip() == "no events after position 1000"


def test_diff_by_number_and_alias(rlreg_demo, inproc, best):
    result = rlreg_demo("diff", "cartpole-ppo", "1", "@best", "--json").json()
    assert (result["a"], result["b"]) == (1, best)
    assert len(result["changed"]) == 8   # the constant clip buffers (RLlib >= 2.40) stay
    assert result["unchanged"] == ["pi.log_std_clip_param_const", "vf.log_std_clip_param_const"]
    assert result["metadata_changes"]["iteration"][0] == 4
    text = inproc("diff", "cartpole-ppo", "7", "8").out
    assert text.startswith("cartpole-ppo: version 7 -> 8")
    assert "max |a-b| =" in text


def test_export_writes_a_checkpoint_rlmodule_loads(rlreg_demo, best, tmp_path):
    import torch

    from registry import Registry
    from rlmodule import RLModule

    target = tmp_path / "best-ckpt"
    out = rlreg_demo("export", "cartpole-ppo@best", str(target), "--json").json()
    assert out["version"] == best and out["name"] == "cartpole-ppo"
    assert json.loads((target / "metadata.json").read_text())["checkpoint_version"] == "2.0"
    restored = RLModule.from_checkpoint(str(target))
    reg = Registry(f"sqlite:///{rlreg_demo.home / 'rlreg.db'}", str(rlreg_demo.home / "blobs"))
    try:
        original = reg.load("cartpole-ppo", alias="best")
    finally:
        reg.close()
    obs = torch.linspace(-1, 1, 40).reshape(10, 4)
    with torch.no_grad():
        a = restored.forward_inference({"obs": obs})["action_dist_inputs"]
        b = original.forward_inference({"obs": obs})["action_dist_inputs"]
    assert torch.equal(a, b)


def test_show_a_multi_module_lists_each_module(rlreg, home_registry):
    import gymnasium as gym
    from clihelpers import InProcess

    from rlmodule import MultiRLModuleSpec, RLModuleSpec
    from rlmodule.ppo import PPOCatalog, PPOTorchRLModule

    env = gym.make("CartPole-v1")
    single = RLModuleSpec(module_class=PPOTorchRLModule, observation_space=env.observation_space,
                          action_space=env.action_space, model_config_dict={"hidden": [8]},
                          catalog_class=PPOCatalog)
    home_registry.snapshot("league", MultiRLModuleSpec(module_specs={"p0": single, "p1": single}).build())
    text = InProcess(rlreg)("show", "league").out  # on this test's own home, not the demo's
    assert "  multi-module: rlmodule.multi_rl_module.MultiRLModule" in text
    assert text.count("observation space: Box(shape=(4,), dtype=float32)") == 2
    assert "  module p0:" in text and "  module p1:" in text
    assert "p1/pi.net.mlp.0.weight" in text
