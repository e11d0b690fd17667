"""`rlreg import NAME PATH --from-rllib` and `rlreg export NAME@ALIAS PATH --format rllib` on the
checkpoints real RLlib 2.35 and 2.60 wrote (tests/fixtures/rllib), without ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clihelpers import assert_error

from rlreg import exitcodes
from rlmodule.rllib_checkpoint import load_rllib_checkpoint

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rllib"


def _expected(version: str) -> dict:
    return json.loads((FIXTURES / version / "expected.json").read_text())


def _logits(module, obs) -> torch.Tensor:
    with torch.no_grad():
        return module.forward_inference({"obs": obs})["action_dist_inputs"]


def test_import_from_rllib_and_export_for_rllib_with_the_console_script(rlreg, inproc, home_registry, tmp_path):
    exp = _expected("ray-2.60.0")
    obs = torch.tensor(exp["obs"])
    out = rlreg("import", "cartpole", str(FIXTURES / "ray-2.60.0" / "ppo_cartpole"), "--from-rllib",
                "--metadata", '{"run": "a"}', "--json").json()
    assert out["version"] == 1 and out["metadata"] == {"rllib_ray_version": "2.60.0", "run": "a"}
    loaded = home_registry.load("cartpole", 1)
    assert torch.equal(_logits(loaded, obs), torch.tensor(exp["ppo_cartpole"]["action_dist_inputs"]))
    home_registry.set_alias("cartpole", "prod", 1)
    written = inproc("export", "cartpole@prod", str(tmp_path / "for-rllib"), "--format", "rllib", "--json").json()
    assert written["format"] == "rllib" and written["path"].endswith("for-rllib")
    back = load_rllib_checkpoint(tmp_path / "for-rllib")
    assert torch.equal(_logits(back, obs), torch.tensor(exp["ppo_cartpole"]["action_dist_inputs"]))


@pytest.mark.parametrize("version", ["ray-2.35.0", "ray-2.60.0"])
def test_a_multi_module_checkpoint_round_trips_in_process(inproc, home_registry, tmp_path, version):
    exp = _expected(version)
    obs = torch.tensor(exp["obs"])
    text = inproc("import", "team", str(FIXTURES / version / "multi"), "--from-rllib").out
    assert text.startswith(f"imported {FIXTURES / version / 'multi'} as team:1")
    multi = home_registry.load("team", 1)
    for mid in ("p0", "p1"):
        assert torch.equal(_logits(multi[mid], obs), torch.tensor(exp["multi"][mid]["action_dist_inputs"]))
    inproc("export", "team:1", str(tmp_path / "out"), "--format", "rllib")
    again = load_rllib_checkpoint(tmp_path / "out")
    for mid in ("p0", "p1"):
        assert torch.equal(_logits(again[mid], obs), torch.tensor(exp["multi"][mid]["action_dist_inputs"]))


def test_import_without_the_flag_names_the_flag(inproc):
    path = str(FIXTURES / "ray-2.35.0" / "ppo_cartpole")
    assert_error(inproc("import", "x", path, code=None), exitcodes.INVALID,
                 "it is an RLlib 2.35.0 checkpoint (pickle files)", "--from-rllib")
    error = json.loads(inproc("import", "x", path, "--json", code=exitcodes.INVALID).err)
    assert error["error"] == exitcodes.LABELS[exitcodes.INVALID] and "--from-rllib" in error["message"]


ENVRUNNER = Path(__file__).parents[1] / "rlmodule" / "fixtures" / "ray-2.60.0-envrunner"


def test_an_env_runner_checkpoint_with_seeded_spaces_imports(inproc, home_registry):
    exp = json.loads((ENVRUNNER / "expected.json").read_text())
    text = inproc("import", "cartpole", str(ENVRUNNER), "--from-rllib").out
    assert text.startswith(f"imported {ENVRUNNER} as cartpole:1")
    module = home_registry.load("cartpole", 1)
    assert torch.equal(_logits(module, torch.tensor(exp["obs"])), torch.tensor(exp["action_dist_inputs"]))


def test_a_hostile_rllib_pickle_is_an_invalid_input_not_a_crash(inproc, tmp_path):
    import shutil

    copy = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "ray-2.60.0" / "ppo_cartpole", copy)
    x: list = [0]
    for _ in range(40):
        x = [x, x]
    (copy / "module_state.pkl").write_bytes(__import__("pickle").dumps({"junk": x}))
    assert_error(inproc("import", "x", str(copy), "--from-rllib", code=None), exitcodes.INVALID,
                 "far more than its size")


def _multi_with_module_id(folder: Path, mid: str) -> Path:
    """An RLlib 2.60 MultiRLModule checkpoint whose one sub-module has the id `mid` (no sub-folders)."""
    import gymnasium as gym
    import numpy as np

    from rlmodule import rllib_checkpoint as rc
    from rlmodule.rllib_writer import New, dumps

    folder.mkdir(parents=True)
    kw = {"observation_space": rc._space(gym.spaces.Box(-1.0, 1.0, (4,), np.float32)),
          "action_space": rc._space(gym.spaces.Discrete(2)), "inference_only": False, "learner_only": False,
          "model_config": {"fcnet_hiddens": [8]}, "catalog_class": rc._RAY_CATALOG}
    spec = New(rc._RAY_SPEC, {"module_class": rc._RAY_PPO, **kw, "load_state_path": None, "model_config_dict": None})
    (folder / "class_and_ctor_args.pkl").write_bytes(dumps({"class": rc._RAY_MULTI, "ctor_args_and_kwargs": ((), {
        "observation_space": None, "action_space": None, "inference_only": False, "learner_only": None,
        "model_config": None, "rl_module_specs": {mid: spec}})}))
    (folder / "module_state.pkl").write_bytes(dumps({}))
    (folder / "metadata.json").write_text(json.dumps({
        "class_and_ctor_args_file": "class_and_ctor_args.pkl", "state_file": "module_state",
        "ray_version": "2.60.0", "checkpoint_version": "2.1"}))
    return folder


@pytest.mark.parametrize("mid", ["../victim", "..", "."])
def test_a_module_id_that_is_not_a_folder_name_is_an_invalid_checkpoint(inproc, home_registry, tmp_path, mid):
    ckpt = _multi_with_module_id(tmp_path / "x" / "ckpt", mid)
    assert_error(inproc("import", "trav", str(ckpt), "--from-rllib", code=None), exitcodes.INVALID,
                 f"module id {mid!r} is not a folder name")
    assert home_registry.models() == []


def test_a_checkpoint_missing_tensors_is_refused_and_nothing_is_recorded(inproc, home_registry, tmp_path):
    import shutil

    copy = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "ray-2.60.0" / "ppo_cartpole", copy)
    (copy / "module_state.pkl").write_bytes(__import__("pickle").dumps({}))
    assert_error(inproc("import", "x", str(copy), "--from-rllib", code=None), exitcodes.INVALID,
                 "module_state.pkl lacks 12 of the module's tensors", "(8 more)")
    assert home_registry.models() == []
