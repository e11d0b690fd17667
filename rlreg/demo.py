"""``rlreg demo``: train PPO's CartPole module briefly, snapshot it, alias the best, load it back.

The update is REINFORCE with a learned value baseline on PPO's policy and value heads: a real
policy-gradient loop that improves CartPole's return within a few seconds on one core.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass

import click

from rlreg import output, show
from rlreg.errors import DemoMismatchError

ENV_ID = "CartPole-v1"
MAX_EPISODE_STEPS = 200
EPISODES_PER_ITERATION = 8
GAMMA = 0.99
LEARNING_RATE = 5e-3
HIDDEN = [64, 64]
CHECK_OBSERVATIONS = 256


@dataclass
class Batch:
    """The episodes of one iteration, flattened."""

    obs: "torch.Tensor"  # noqa: F821
    actions: "torch.Tensor"  # noqa: F821
    returns: "torch.Tensor"  # noqa: F821
    episode_returns: list[float]


def make_spec(env, load_state_path: str | None = None):
    """The RLModuleSpec of PPO's module for this env (the reference's docstring example)."""
    from rlmodule import RLModuleSpec
    from rlmodule.ppo import PPOCatalog, PPOTorchRLModule

    return RLModuleSpec(
        module_class=PPOTorchRLModule,
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config_dict={"hidden": HIDDEN},
        catalog_class=PPOCatalog,
        load_state_path=load_state_path,
    )


def collect(env, module, episodes: int, seed: int) -> Batch:
    """Play ``episodes`` episodes sampling from the policy; discounted returns per step."""
    import torch

    obs_list, act_list, ret_list, episode_returns = [], [], [], []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        rewards = []
        done = False
        while not done:
            obs_t = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
            with torch.no_grad():
                logits = module.forward_exploration({"obs": obs_t})["action_dist_inputs"]
            action = int(torch.distributions.Categorical(logits=logits).sample()[0])
            obs_list.append(obs_t[0])
            act_list.append(action)
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(float(reward))
            done = terminated or truncated
        running, returns = 0.0, []
        for r in reversed(rewards):
            running = r + GAMMA * running
            returns.append(running)
        ret_list.extend(reversed(returns))
        episode_returns.append(sum(rewards))
    return Batch(torch.stack(obs_list), torch.as_tensor(act_list),
                 torch.as_tensor(ret_list, dtype=torch.float32), episode_returns)


def update(module, optimizer, batch: Batch) -> float:
    """One policy-gradient step (advantage = return - value) plus a value regression; the loss."""
    import torch

    out = module.forward_train({"obs": batch.obs})
    values = out["vf_preds"].reshape(-1)
    logp = torch.distributions.Categorical(logits=out["action_dist_inputs"]).log_prob(batch.actions)
    advantages = batch.returns - values.detach()
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    value_loss = ((values - batch.returns) ** 2).mean() / max(float(batch.returns.var()), 1.0)
    loss = -(logp * advantages).mean() + 0.5 * value_loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def greedy(module, obs):
    """Logits and greedy actions of ``module`` on a batch of observations."""
    import torch

    with torch.no_grad():
        logits = module.forward_inference({"obs": obs})["action_dist_inputs"]
    return logits, logits.argmax(dim=-1)


def say(session, text: str = "") -> None:
    """Narrate for people (stdout); with --json the narration goes to stderr."""
    click.echo(text, err=session.as_json)


def run_demo(session, *, name: str, iterations: int, every: int, seed: int | None) -> dict:
    """The whole demo; returns (and with --json prints) a summary."""
    import gymnasium as gym
    import torch

    started = time.perf_counter()
    torch.set_num_threads(1)
    seed = int.from_bytes(os.urandom(4), "little") % 100_000 if seed is None else seed
    torch.manual_seed(seed)
    reg = session.registry
    env = gym.make(ENV_ID, max_episode_steps=MAX_EPISODE_STEPS)

    iteration0, env_steps = 0, 0
    if reg.exists(name):
        latest = reg.version(name)
        module = reg.load(name, latest.version)
        iteration0 = _int(latest.metadata.get("iteration"))
        env_steps = _int(latest.metadata.get("env_steps"))
        say(session, f"resuming {name} from version {latest.version} (seed {seed})")
    else:
        module = make_spec(env).build()
        say(session, f"built PPOTorchRLModule for {ENV_ID}, hidden {HIDDEN} (seed {seed})")
    optimizer = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE)

    snapshots: dict[int, tuple[float, dict]] = {}  # version -> (mean return, state dict copy)
    for it in range(iteration0 + 1, iteration0 + iterations + 1):
        batch = collect(env, module, EPISODES_PER_ITERATION, seed * 1000 + it * EPISODES_PER_ITERATION)
        env_steps += len(batch.actions)
        loss = update(module, optimizer, batch)
        mean_return = sum(batch.episode_returns) / len(batch.episode_returns)
        line = f"iteration {it:>3}  mean return {mean_return:6.1f}  loss {loss:7.3f}"
        if (it - iteration0) % every == 0 or it == iteration0 + iterations:
            metadata = {"iteration": it, "mean_return": round(mean_return, 2), "env_steps": env_steps,
                        "seed": seed}
            mv = reg.snapshot(name, module, metadata=metadata)
            snapshots[mv.version] = (mean_return, copy.deepcopy(module.state_dict()))
            line += f"  -> snapshot {name}:{mv.version}"
        say(session, line)

    best_version = max(snapshots, key=lambda v: snapshots[v][0])
    reg.set_alias(name, "best", best_version)
    say(session, f"\nalias best -> version {best_version} "
                 f"(mean return {snapshots[best_version][0]:.1f}, the best of this run)")

    check = check_best(session, env, name, snapshots[best_version][1], seed)
    say(session, f"loaded rlreg://{name}@best into a fresh module: "
                 f"{check['matching_actions']}/{check['observations']} greedy actions match version "
                 f"{best_version}, logits identical: {check['identical_logits']}")
    if not check["identical_logits"]:
        raise DemoMismatchError(f"rlreg://{name}@best does not reproduce version {best_version}'s outputs")

    versions = reg.versions(name)
    last_two = [v.version for v in versions[-2:]]
    result = reg.diff(name, *last_two) if len(last_two) == 2 else None
    seconds = time.perf_counter() - started
    say(session, "")
    say(session, show.versions_table(versions))
    if result is not None:
        say(session, f"\ndiff {name} {last_two[0]} {last_two[1]}:")
        say(session, str(result))
    say(session, f"\ndone in {seconds:.1f} s: {iterations} updates, {len(snapshots)} snapshots")
    summary = {"name": name, "seed": seed, "env_steps": env_steps, "best": best_version,
               "snapshots": sorted(snapshots), "check": check, "versions": versions, "diff": result,
               "seconds": round(seconds, 2)}
    if session.as_json:
        output.echo_json(summary)
    return summary


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def check_best(session, env, name: str, best_state: dict, seed: int) -> dict:
    """Load ``rlreg://name@best`` via ``load_state_path`` and compare it with the best snapshot."""
    import torch

    if session.db:  # rlreg:// resolves against the default registry: point it at ours
        os.environ["RLREG_DB_URL"] = session.db
    if session.storage:
        os.environ["RLREG_STORAGE_URL"] = session.storage
    loaded = make_spec(env, load_state_path=f"rlreg://{name}@best").build()
    reference = make_spec(env).build()
    reference.load_state_dict(best_state)

    generator = torch.Generator().manual_seed(seed)
    scale = torch.tensor([2.4, 3.0, 0.21, 3.0])  # cart position, velocity, pole angle, angular velocity
    obs = (torch.rand((CHECK_OBSERVATIONS, 4), generator=generator) * 2 - 1) * scale
    logits_a, actions_a = greedy(loaded, obs)
    logits_b, actions_b = greedy(reference, obs)
    return {
        "observations": CHECK_OBSERVATIONS,
        "matching_actions": int((actions_a == actions_b).sum()),
        "identical_logits": bool(torch.equal(logits_a, logits_b)),
    }
