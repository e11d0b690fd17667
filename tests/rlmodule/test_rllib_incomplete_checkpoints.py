"""RLlib checkpoints that do not hold the whole module are refused, as rlreg's own format refuses
them: a state file missing tensors, a MultiRLModule missing a policy's folder, module ids that are
not folder names; and an absurd model config with no state behind it is refused without being built."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlmodule import CheckpointFormatError, CheckpointNotFoundError, StateMismatchError
from rlmodule.pickle_free import decode
from rlmodule.rllib_checkpoint import (_RAY_CATALOG, _RAY_MULTI, _RAY_PPO, _RAY_SPEC, _space,
                                       load_rllib_checkpoint)
from rlmodule.rllib_globals import RLLIB_GLOBALS
from rlmodule.rllib_writer import New, dumps

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rllib"
CARTPOLE = FIXTURES / "ray-2.60.0" / "ppo_cartpole"
MULTI = FIXTURES / "ray-2.60.0" / "multi"
ROOT = Path(__file__).parents[2]
METADATA = {"class_and_ctor_args_file": "class_and_ctor_args.pkl", "state_file": "module_state",
            "ray_version": "2.60.0", "checkpoint_version": "2.1"}


def _copy(tmp_path, src) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


def _keep(folder: Path, keep) -> list[str]:
    """Rewrites folder/module_state.pkl with only the keys `keep` accepts; the keys dropped (but
    the log_std_clip_param_const buffers, which RLlib before 2.40 did not write)."""
    state = decode((folder / "module_state.pkl").read_bytes(), RLLIB_GLOBALS)
    (folder / "module_state.pkl").write_bytes(dumps({k: v for k, v in state.items() if keep(k)}))
    return sorted(k for k in state if not keep(k) and not k.endswith("log_std_clip_param_const"))


def test_a_state_file_missing_tensors_is_refused_naming_the_file_and_keys(tmp_path):
    ckpt = _copy(tmp_path, CARTPOLE)
    dropped = _keep(ckpt, lambda k: not k.startswith("vf."))
    with pytest.raises(CheckpointFormatError) as e:
        load_rllib_checkpoint(ckpt)
    msg = str(e.value)
    assert "module_state.pkl" in msg and dropped[0] in msg and f"{len(dropped)} " in msg
    assert "\n" not in msg


def test_an_empty_state_file_is_refused_with_the_count_of_missing_tensors(tmp_path):
    ckpt = _copy(tmp_path, CARTPOLE)
    dropped = _keep(ckpt, lambda k: False)
    with pytest.raises(CheckpointFormatError, match=rf"lacks {len(dropped)} of the module's"):
        load_rllib_checkpoint(ckpt)


def test_a_multi_checkpoint_missing_a_policy_folder_is_refused_naming_it(tmp_path):
    ckpt = _copy(tmp_path, MULTI)
    shutil.rmtree(ckpt / "p1")
    with pytest.raises(CheckpointNotFoundError, match=r"module 'p1' is missing"):
        load_rllib_checkpoint(ckpt)


def test_a_policy_state_missing_tensors_in_a_multi_checkpoint_names_its_file(tmp_path):
    ckpt = _copy(tmp_path, MULTI)
    dropped = _keep(ckpt / "p1", lambda k: k != "pi.net.mlp.0.bias")
    with pytest.raises(CheckpointFormatError, match=r"p1/module_state\.pkl.*'pi\.net\.mlp\.0\.bias'"):
        load_rllib_checkpoint(ckpt)
    assert dropped == ["pi.net.mlp.0.bias"]


@pytest.mark.parametrize("version", ["2.35.0", "2.60.0"])
@pytest.mark.parametrize("name", ["ppo_cartpole", "multi"])
def test_real_rllib_checkpoints_still_import(version, name):
    # (2.35's heads lack the log_std_clip_param_const buffer RLlib 2.40 added: it is the config's value)
    load_rllib_checkpoint(FIXTURES / f"ray-{version}" / name)


def _huge(folder: Path, width: int) -> Path:
    folder.mkdir()
    kwargs = {"observation_space": _space(gym.spaces.Box(-1, 1, (4,), np.float32)),
              "action_space": _space(gym.spaces.Discrete(2)), "inference_only": False,
              "learner_only": False, "model_config": {"fcnet_hiddens": [width, width]},
              "catalog_class": _RAY_CATALOG}
    (folder / "class_and_ctor_args.pkl").write_bytes(dumps({"class": _RAY_PPO, "ctor_args_and_kwargs": ((), kwargs)}))
    (folder / "module_state.pkl").write_bytes(dumps({}))
    (folder / "metadata.json").write_text(json.dumps(METADATA))
    return folder


def test_huge_layers_with_an_empty_state_are_refused_before_they_are_built(tmp_path):
    ckpt = _huge(tmp_path / "ckpt", 12_000)  # two 12000-unit layers: 576 MB of weights
    assert sum(p.stat().st_size for p in ckpt.iterdir()) < 2000
    probe = (  # in a fresh process, so that its peak memory is this import's
        "import resource, sys\n"
        "from rlmodule.rllib_checkpoint import load_rllib_checkpoint\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    load_rllib_checkpoint(sys.argv[1])\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    out = subprocess.run([sys.executable, "-c", probe, str(ckpt)], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.splitlines()
    assert out[0].startswith("CheckpointFormatError") and "lacks" in out[0], out
    assert int(out[-1]) < 100, f"the peak memory grew {out[-1]} MiB"


def test_a_misfit_tensor_in_a_multi_checkpoint_names_the_policys_state_file(tmp_path):
    ckpt = _copy(tmp_path, MULTI)
    state = decode((ckpt / "p1" / "module_state.pkl").read_bytes(), RLLIB_GLOBALS)
    state["pi.net.mlp.0.bias"] = np.zeros(3, np.float32)
    (ckpt / "p1" / "module_state.pkl").write_bytes(dumps(state))
    with pytest.raises(StateMismatchError, match=r"p1/module_state\.pkl: .*'pi\.net\.mlp\.0\.bias'"):
        load_rllib_checkpoint(ckpt)


def test_a_legacy_torch_save_state_file_is_named_as_such(tmp_path):
    ckpt = _copy(tmp_path, FIXTURES / "ray-2.35.0" / "ppo_cartpole")
    legacy = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)  # its first pickles
    (ckpt / "module_state.pt").write_bytes(legacy)
    with pytest.raises(CheckpointFormatError, match=r"module_state\.pt is a legacy \(non-zip\) torch\.save file"):
        load_rllib_checkpoint(ckpt)


def test_an_algorithm_checkpoint_names_the_rl_module_checkpoint_inside_it(tmp_path):
    algo = tmp_path / "algo"
    shutil.copytree(CARTPOLE, algo / "learner_group" / "learner" / "rl_module")
    (algo / "rllib_checkpoint.json").write_text("{}")
    for folder in (algo / "learner_group", algo / "learner_group" / "learner"):
        (folder / "metadata.json").write_text(json.dumps(METADATA))
        (folder / "class_and_ctor_args.pkl").write_bytes(
            b"\x80\x02cray.rllib.core.learner.learner_group\nLearnerGroup\n.")
    for folder in (algo, algo / "learner_group", algo / "learner_group" / "learner"):
        with pytest.raises(CheckpointFormatError, match=r"not an RLModule one; its RLModule checkpoint is "
                                                        r"\S+/algo/learner_group/learner/rl_module"):
            load_rllib_checkpoint(folder)
    load_rllib_checkpoint(algo / "learner_group" / "learner" / "rl_module")
