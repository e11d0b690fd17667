"""Real RLlib 2.35 and 2.60 checkpoints (tests/fixtures/rllib) read without ray or unpickling, and
folders written for RLlib (read back here; `make rllib-check` loads them with real RLlib 2.60)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rlmodule import (
    CheckpointFormatError, CheckpointNotFoundError, MultiRLModule, PickleRefusedError, RLModule, RLModuleSpec,
    StateMismatchError,
)
from rlmodule.ppo import PPOTorchRLModule
from rlmodule.rllib_checkpoint import (
    is_rllib_checkpoint, load_rllib_checkpoint, rllib_metadata, save_rllib_checkpoint,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rllib"
VERSIONS = ["ray-2.35.0", "ray-2.60.0"]


def expected(version: str) -> dict:
    return json.loads((FIXTURES / version / "expected.json").read_text())


def outputs(module, obs) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return module.forward_inference({"obs": obs})["action_dist_inputs"], module.compute_values({"obs": obs})


def assert_bit_identical(module, exp: dict, obs) -> None:
    logits, values = outputs(module, obs)
    assert torch.equal(logits, torch.tensor(exp["action_dist_inputs"]))
    assert torch.equal(values, torch.tensor(exp["vf_preds"]))


@pytest.mark.parametrize("version", VERSIONS)
def test_a_real_single_module_checkpoint_imports_bit_identical(version):
    exp = expected(version)
    path = FIXTURES / version / "ppo_cartpole"
    assert is_rllib_checkpoint(path) and rllib_metadata(path)["ray_version"] == exp["ray_version"]
    module = load_rllib_checkpoint(path)
    assert type(module) is PPOTorchRLModule and not module.config.model_config_dict["vf_share_layers"]
    assert_bit_identical(module, exp["ppo_cartpole"], torch.tensor(exp["obs"]))


@pytest.mark.parametrize("version", VERSIONS)
def test_a_real_two_policy_multi_module_checkpoint_imports_bit_identical(version):
    exp = expected(version)
    multi = load_rllib_checkpoint(FIXTURES / version / "multi")
    assert isinstance(multi, MultiRLModule) and sorted(multi.keys()) == ["p0", "p1"]
    for mid in ("p0", "p1"):
        assert_bit_identical(multi[mid], exp["multi"][mid], torch.tensor(exp["obs"]))


def test_the_fixtures_cover_numpy_1_and_2_pickles():
    old = (FIXTURES / "ray-2.35.0" / "ppo_cartpole" / "module_state.pt").read_bytes()
    new = (FIXTURES / "ray-2.60.0" / "ppo_cartpole" / "module_state.pkl").read_bytes()
    assert b"numpy.core.numeric" in old and b"numpy._core.numeric" in new


def test_a_235_state_loads_into_240_heads_with_their_default_buffers():
    module = load_rllib_checkpoint(FIXTURES / "ray-2.35.0" / "ppo_cartpole")
    assert module.get_state()["pi.log_std_clip_param_const"].tolist() == [20.0]


@pytest.mark.parametrize("version", VERSIONS)
def test_our_export_for_rllib_reads_back_with_the_same_outputs(version, tmp_path):
    exp = expected(version)
    obs = torch.tensor(exp["obs"])
    multi = load_rllib_checkpoint(FIXTURES / version / "multi")
    url = save_rllib_checkpoint(multi, tmp_path / "multi")
    assert url.endswith("/multi") and url.startswith("file://")
    meta = json.loads((tmp_path / "multi" / "p0" / "metadata.json").read_text())
    assert meta["checkpoint_version"] == "2.1" and meta["state_file"] == "module_state"
    assert sorted(p.name for p in (tmp_path / "multi").iterdir()) == [
        "class_and_ctor_args.pkl", "metadata.json", "module_state.pkl", "p0", "p1"]
    ctor = (tmp_path / "multi" / "p1" / "class_and_ctor_args.pkl").read_bytes()
    assert b"DefaultPPOTorchRLModule" in ctor and b"head_fcnet_hiddens" in ctor
    again = load_rllib_checkpoint(tmp_path / "multi")
    for mid in ("p0", "p1"):
        assert_bit_identical(again[mid], exp["multi"][mid], obs)


def test_rlmodule_from_checkpoint_names_the_way_in(tmp_path):
    with pytest.raises(CheckpointFormatError, match=r"it is an RLlib 2.60.0 checkpoint \(pickle files\), "
                                                    r"which RLModule.from_checkpoint does not read; import "
                                                    r"it with `rlreg import NAME PATH --from-rllib`"):
        RLModule.from_checkpoint(FIXTURES / "ray-2.60.0" / "ppo_cartpole")


def test_damaged_and_foreign_rllib_checkpoints_are_refused(tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "ray-2.60.0" / "ppo_cartpole", copy)
    (copy / "module_state.pkl").unlink()
    with pytest.raises(CheckpointNotFoundError, match="no state file"):
        load_rllib_checkpoint(copy)
    (copy / "module_state.pkl").write_bytes(b"PK\x03\x04zip")
    with pytest.raises(CheckpointFormatError, match="torch.save zip archive"):
        load_rllib_checkpoint(copy)
    import pickle
    (copy / "module_state.pkl").write_bytes(pickle.dumps({"extra.weight": np.zeros(3, np.float32)}))
    with pytest.raises(StateMismatchError, match="has no state keys 'extra.weight'"):
        load_rllib_checkpoint(copy)
    (copy / "class_and_ctor_args.pkl").write_bytes(b"cposix\nsystem\n(Vtouch x\ntR.")
    with pytest.raises(PickleRefusedError, match="class_and_ctor_args.pkl: global 'posix.system'"):
        load_rllib_checkpoint(copy)


def test_msgpack_state_files_are_read_with_msgpack_numpys_layout(tmp_path):
    msgpack = pytest.importorskip("msgpack")
    copy = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "ray-2.60.0" / "ppo_cartpole", copy)
    state = load_rllib_checkpoint(copy).get_state()
    (copy / "module_state.pkl").unlink()
    packed = {k: {b"nd": True, b"type": v.numpy().dtype.str, b"kind": b"", b"shape": list(v.shape),
                  b"data": v.numpy().tobytes()} for k, v in state.items()}
    (copy / "module_state.msgpack").write_bytes(msgpack.packb(packed, use_bin_type=True))
    again = load_rllib_checkpoint(copy)
    assert all(torch.equal(again.get_state()[k], v) for k, v in state.items())
    packed["pi.net.mlp.0.bias"][b"kind"] = b"O"
    (copy / "module_state.msgpack").write_bytes(msgpack.packb(packed, use_bin_type=True))
    with pytest.raises(CheckpointFormatError, match="object and structured arrays hold pickles"):
        load_rllib_checkpoint(copy)


def test_a_module_without_an_rllib_counterpart_is_refused(toy_module, tmp_path):
    with pytest.raises(CheckpointFormatError, match="ToyTorchModule has no RLlib counterpart: --format "
                                                    "rllib writes PPO modules"):
        save_rllib_checkpoint(toy_module, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_rlreg_checkpoint_is_not_taken_for_an_rllib_one(toy_module, tmp_path):
    toy_module.save_to_path(tmp_path / "ours")
    assert not is_rllib_checkpoint(tmp_path / "ours")
    with pytest.raises(CheckpointFormatError, match="is an rlreg checkpoint .rlreg.checkpoint/1., not one "
                                                    "RLlib wrote; import it without --from-rllib"):
        load_rllib_checkpoint(tmp_path / "ours")


def test_a_multi_module_with_one_module_rllib_lacks_is_refused_before_anything_is_written(toy_spec, tmp_path):
    import gymnasium as gym

    from rlmodule import MultiRLModuleSpec, RLModuleSpec
    from rlmodule.ppo import PPOCatalog

    ppo = RLModuleSpec(module_class=PPOTorchRLModule, observation_space=gym.spaces.Box(-1, 1, (4,), np.float32),
                       action_space=gym.spaces.Discrete(2), model_config_dict={"fcnet_hiddens": [8]},
                       catalog_class=PPOCatalog)
    multi = MultiRLModuleSpec(module_specs={"a": ppo, "z": toy_spec}).build()
    with pytest.raises(CheckpointFormatError, match="module 'z': ToyTorchModule has no RLlib counterpart"):
        save_rllib_checkpoint(multi, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # not even the PPO module 'a' (written first, before)


def test_an_export_keeps_the_model_configs_own_keys(tmp_path):
    """Keys of the user's own in model_config (a custom module's settings) were dropped by the export, as
    RLlib's model_config keeps them; a read back keeps them too."""
    import gymnasium as gym

    spec = RLModuleSpec(module_class=PPOTorchRLModule, observation_space=gym.spaces.Box(-1, 1, (4,)),
                        action_space=gym.spaces.Discrete(2),
                        model_config={"fcnet_hiddens": [8], "my_custom": 3, "nested": {"a": [1, "b"]}})
    module = spec.build()
    save_rllib_checkpoint(module, tmp_path / "out")
    again = load_rllib_checkpoint(tmp_path / "out")
    config = again.config.model_config_dict
    assert config["my_custom"] == 3 and config["nested"] == {"a": [1, "b"]}, config
