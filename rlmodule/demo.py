"""Demo: build PPO's CartPole module, run it, save it, restore it, show the outputs match.

    python -m rlmodule.demo [--steps 200] [--seed 0] [--path URL]

Exits 0 when the restored module matches the original bit for bit (state tensors, the three
forward passes on every observation seen, and a replay of the run with the same seed), else 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from rlmodule.ppo import PPOCatalog, PPOTorchRLModule
from rlmodule.rl_module import RLModule, RLModuleSpec
from storage import Location

ENV_ID = "CartPole-v1"


@dataclass
class Rollout:
    """What a module did on the environment: observations seen, actions taken, returns."""

    observations: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    returns: list = field(default_factory=list)


def build_module(env: gym.Env, seed: int) -> RLModule:
    """PPO's torch module for the env's spaces, with seeded initial weights."""
    torch.manual_seed(seed)
    spec = RLModuleSpec(
        module_class=PPOTorchRLModule,
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config_dict={"hidden": [64, 64]},
        catalog_class=PPOCatalog,
    )
    return spec.build()


def rollout(module: RLModule, env: gym.Env, steps: int, seed: int) -> Rollout:
    """Samples actions from `forward_exploration` for `steps` steps, resetting after episodes."""
    torch.manual_seed(seed)
    dist_cls = module.get_exploration_action_dist_cls()
    result, episode_return = Rollout(), 0.0
    obs, _ = env.reset(seed=seed)
    with torch.no_grad():
        for _ in range(steps):
            out = module.forward_exploration({"obs": torch.from_numpy(obs[None])})
            action = dist_cls.from_logits(out["action_dist_inputs"]).sample()[0].numpy()
            result.observations.append(obs)
            result.actions.append(int(action))
            obs, reward, terminated, truncated, _ = env.step(action)
            episode_return += float(reward)
            if terminated or truncated:
                result.returns.append(episode_return)
                obs, _ = env.reset()
                episode_return = 0.0
    return result


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True if `a` and `b` have the same dtype, shape and bytes."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return a.detach().contiguous().numpy().tobytes() == b.detach().contiguous().numpy().tobytes()


def compare_state(a: RLModule, b: RLModule) -> list[str]:
    """Names of the state tensors that differ (or exist on one side only)."""
    sa, sb = a.get_state(), b.get_state()
    return sorted(set(sa) ^ set(sb)) + sorted(k for k in set(sa) & set(sb)
                                             if not same_bits(sa[k], sb[k]))


def compare_outputs(a: RLModule, b: RLModule, obs: np.ndarray) -> dict[str, list[str]]:
    """For each forward pass, the output columns whose tensors differ."""
    batch = {"obs": torch.from_numpy(obs)}
    report = {}
    with torch.no_grad():
        for name in ("forward_inference", "forward_exploration", "forward_train"):
            oa, ob = getattr(a, name)(batch), getattr(b, name)(batch)
            keys = sorted(set(oa) | set(ob))
            report[name] = [k for k in keys if k not in oa or k not in ob
                            or not same_bits(oa[k], ob[k])]
            report[name + " columns"] = keys
    return report


def tamper(module: RLModule) -> None:
    """Moves one weight of `module` by one ulp (to show that the comparison catches it)."""
    with torch.no_grad():
        weight = next(module.parameters())
        weight.view(-1)[0] = torch.nextafter(weight.view(-1)[0], torch.tensor(np.inf))


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m rlmodule.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--steps", type=int, default=200, help="environment steps to run (>0)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, env and sampling")
    parser.add_argument("--path", default=None,
                        help="checkpoint folder (any fsspec URL); default: a temporary folder")
    parser.add_argument("--tamper", action="store_true",
                        help="change one restored weight by one ulp: the demo must then fail")
    args = parser.parse_args(argv)
    if args.steps <= 0:
        parser.error(f"--steps must be a positive number, got {args.steps}")
    return args


def same_run(a: Rollout, b: Rollout) -> bool:
    """True if both runs saw the same observations and took the same actions."""
    return a.actions == b.actions and len(a.observations) == len(b.observations) and all(
        np.array_equal(x, y) for x, y in zip(a.observations, b.observations))


def save_and_restore(module: RLModule, args, out) -> RLModule:
    """Saves `module` (to `--path` or a temp folder) and loads it back with from_checkpoint."""
    with tempfile.TemporaryDirectory(prefix="rlmodule-demo-") as tmp:
        url = module.save_to_path(args.path or f"{tmp}/ppo_cartpole")
        out(f"saved    {url}: {', '.join(Location(url).listdir())}")
        restored = RLModule.from_checkpoint(url)
    out(f"restored RLModule.from_checkpoint -> {type(restored).__name__}")
    if args.tamper:
        tamper(restored)
    return restored


def check(module: RLModule, restored: RLModule, first: Rollout, args, out) -> bool:
    """Compares state, forward passes and a seeded replay; prints one line each."""
    total = len(module.get_state())
    bad_state = compare_state(module, restored)
    out(f"state    {total - len(bad_state)}/{total} tensors identical"
        + (f"; DIFFER: {bad_state}" if bad_state else ""))
    outputs = compare_outputs(module, restored, np.stack(first.observations))
    for name in ("forward_inference", "forward_exploration", "forward_train"):
        columns = ", ".join(outputs[name + " columns"])
        verdict = f"DIFFER in {outputs[name]}" if outputs[name] else "identical"
        out(f"{name:<20} on {len(first.observations)} observations: {columns}: {verdict}")
    second = rollout(restored, gym.make(ENV_ID), args.steps, args.seed)
    same = sum(x == y for x, y in zip(first.actions, second.actions))
    out(f"replay   {same}/{len(first.actions)} actions identical with seed {args.seed}")
    forward_ok = not any(outputs[name] for name in outputs if not name.endswith("columns"))
    return not bad_state and forward_ok and same_run(first, second)


def run_demo(args, out=print) -> bool:
    """Builds, runs, saves, restores and compares; prints a report; True if all match."""
    env = gym.make(ENV_ID)
    module = build_module(env, args.seed)
    n_params = sum(p.numel() for p in module.parameters())
    out(f"built    {type(module).__name__} for {ENV_ID}: {n_params:,} parameters in "
        f"{len(module.get_state())} tensors")
    first = rollout(module, env, args.steps, args.seed)
    out(f"ran      {args.steps} steps: {len(first.returns)} finished episodes, "
        f"returns {[round(r) for r in first.returns][:8]}")
    restored = save_and_restore(module, args, out)
    ok = check(module, restored, first, args, out)
    out("OK: the restored module matches the original bit for bit" if ok
        else "MISMATCH: the restored module differs from the original")
    return ok


def main(argv=None) -> int:
    """Command-line entry point: 0 if the restored module matches, else 1."""
    return 0 if run_demo(parse_args(argv)) else 1


if __name__ == "__main__":
    sys.exit(main())
