"""Inside a venv with real RLlib: load rlreg's `--format rllib` exports and decode rlreg's space dicts.

Reads JSON on stdin: {"checkpoints": {name: {"path", "obs", "action_dist_inputs": {mid|"": logits}}},
"spaces": {kind: dict}}; prints JSON: per checkpoint the class RLlib built and whether its forward
outputs (after `RLModule.from_checkpoint`, and again after zeroing the weights and
`restore_from_path`) equal rlreg's bit for bit; per space kind RLlib's class name or the error.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def logits(module, obs):
    import torch

    with torch.no_grad():
        return module.forward_inference({"obs": torch.tensor(obs)})["action_dist_inputs"].tolist()


def modules(root):
    return {mid: root[mid] for mid in root.keys()} if hasattr(root, "keys") else {"": root}


def check_checkpoint(case: dict) -> dict:
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModule

    module = RLModule.from_checkpoint(case["path"])
    loaded = {mid: logits(m, case["obs"]) == case["action_dist_inputs"][mid]
              for mid, m in modules(module).items()}
    with torch.no_grad():  # zeroed, so only restore_from_path can bring the outputs back
        for sub in modules(module).values():
            for p in sub.parameters():
                p.zero_()
    zeroed = {mid: logits(m, case["obs"]) == case["action_dist_inputs"][mid]
              for mid, m in modules(module).items()}
    module.restore_from_path(case["path"])
    restored = {mid: logits(m, case["obs"]) == case["action_dist_inputs"][mid]
                for mid, m in modules(module).items()}
    return {"class": f"{type(module).__module__}.{type(module).__name__}",
            "from_checkpoint_identical": loaded, "zeroed_differs": not any(zeroed.values()),
            "restore_from_path_identical": restored}


def check_space(d: dict) -> dict:
    from ray.rllib.utils.serialization import gym_space_from_dict

    try:
        return {"class": type(gym_space_from_dict(d)).__name__}
    except Exception as e:  # noqa: BLE001 - reported, the driver decides
        return {"error": f"{type(e).__name__}: {e}"}


def main() -> None:
    import ray

    config = json.load(sys.stdin)
    out = {"ray_version": ray.__version__,
           "spaces": {k: check_space(d) for k, d in config["spaces"].items()},
           "checkpoints": {k: check_checkpoint(c) for k, c in config.get("checkpoints", {}).items()}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
