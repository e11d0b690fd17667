"""``rlreg demo``: train PPO's CartPole module briefly, snapshot it, alias the best, load it back.

Each update is a tiny PPO step on PPO's own policy and value heads: a few Adam steps on the clipped
surrogate objective (advantage = discounted return minus the value estimate) plus a value loss. A
real policy-gradient loop that improves CartPole's return within a few seconds on one core.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field

import click

from rlreg import output, show
from rlreg.errors import DemoMismatchError

ENV_ID = "CartPole-v1"
MAX_EPISODE_STEPS = 200
EPISODES_PER_ITERATION = 8
GAMMA = 0.99
LEARNING_RATE = 5e-3
EPOCHS = 8  # Adam steps per batch
CLIP = 0.2  # PPO's clip range of the probability ratio
HIDDEN = [64, 64]
CHECK_OBSERVATIONS = 256


@dataclass
class Batch:
    """The episodes of one iteration, flattened."""

    obs: "torch.Tensor"  # noqa: F821
    actions: "torch.Tensor"  # noqa: F821
    logp: "torch.Tensor"  # noqa: F821 - log-probability of each action when it was sampled
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

    obs_list, act_list, logp_list, ret_list, episode_returns = [], [], [], [], []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        rewards = []
        done = False
        while not done:
            obs_t = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
            with torch.no_grad():
                logits = module.forward_exploration({"obs": obs_t})["action_dist_inputs"]
            dist = torch.distributions.Categorical(logits=logits[0])
            action = dist.sample()
            obs_list.append(obs_t[0])
            act_list.append(int(action))
            logp_list.append(dist.log_prob(action))
            obs, reward, terminated, truncated, _ = env.step(int(action))
            rewards.append(float(reward))
            done = terminated or truncated
        running, returns = 0.0, []
        for r in reversed(rewards):
            running = r + GAMMA * running
            returns.append(running)
        ret_list.extend(reversed(returns))
        episode_returns.append(sum(rewards))
    return Batch(torch.stack(obs_list), torch.as_tensor(act_list), torch.stack(logp_list),
                 torch.as_tensor(ret_list, dtype=torch.float32), episode_returns)


def update(module, optimizer, batch: Batch) -> float:
    """A tiny PPO update: ``EPOCHS`` Adam steps on the clipped surrogate plus a value loss."""
    import torch

    with torch.no_grad():
        values = module.forward_train({"obs": batch.obs})["vf_preds"].reshape(-1)
    advantages = batch.returns - values  # discounted return minus the value head's estimate
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    value_scale = max(float(batch.returns.var()), 1.0)
    for _ in range(EPOCHS):
        out = module.forward_train({"obs": batch.obs})
        logp = torch.distributions.Categorical(logits=out["action_dist_inputs"]).log_prob(batch.actions)
        ratio = torch.exp(logp - batch.logp)
        clipped = torch.clamp(ratio, 1 - CLIP, 1 + CLIP)
        policy_loss = -torch.min(ratio * advantages, clipped * advantages).mean()
        value_loss = ((out["vf_preds"].reshape(-1) - batch.returns) ** 2).mean() / value_scale
        loss = policy_loss + 0.5 * value_loss
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
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is faster, and fair to a shared machine
    try:
        return _run(session, name=name, iterations=iterations, every=every, seed=seed)
    finally:
        torch.set_num_threads(threads)


@dataclass
class Run:
    """One demo run's state: where it started, and the snapshots it took."""

    name: str
    seed: int
    iteration0: int = 0
    env_steps: int = 0
    snapshots: dict = field(default_factory=dict)  # version -> (mean return, copy of the state dict)


def _run(session, *, name: str, iterations: int, every: int, seed: int | None) -> dict:
    import gymnasium as gym
    import torch

    started = time.perf_counter()
    run = Run(name, int.from_bytes(os.urandom(4), "little") % 100_000 if seed is None else seed)
    torch.manual_seed(run.seed)
    env = gym.make(ENV_ID, max_episode_steps=MAX_EPISODE_STEPS)
    say(session, f"registry: {session.db_display} + {session.registry.storage_url}")
    module = start(session, env, run)
    train(session, env, module, run, iterations, every)

    best = max(run.snapshots, key=lambda v: run.snapshots[v][0])
    session.registry.set_alias(name, "best", best)
    say(session, f"\nalias best -> version {best} (mean return {run.snapshots[best][0]:.1f}, "
                 "the best of this run)")
    check = check_best(session, env, name, run.snapshots[best][1], run.seed)
    say(session, f"loaded rlreg://{name}@best into a fresh module: {check['matching_actions']}/"
                 f"{check['observations']} greedy actions match version {best}, "
                 f"logits identical: {check['identical_logits']}")
    if not check["identical_logits"]:
        raise DemoMismatchError(f"rlreg://{name}@best does not reproduce version {best}'s outputs")

    versions, result = report(session, name)
    seconds = time.perf_counter() - started
    say(session, f"\ndone in {seconds:.1f} s: {iterations} updates, {len(run.snapshots)} snapshots")
    say(session, f"next: rlreg show {name}@best   rlreg history {name}   rlreg events --follow")
    summary = {"name": name, "seed": run.seed, "env_steps": run.env_steps, "best": best,
               "snapshots": sorted(run.snapshots), "check": check, "versions": versions, "diff": result,
               "seconds": round(seconds, 2)}
    if session.as_json:
        output.echo_json(summary)
    return summary


def start(session, env, run: Run):
    """A fresh PPO module, or the model's latest version when it exists (the second run)."""
    reg = session.registry
    if not reg.exists(run.name):
        say(session, f"built PPOTorchRLModule for {ENV_ID}, hidden {HIDDEN} (seed {run.seed})")
        return make_spec(env).build()
    latest = reg.version(run.name)
    run.iteration0 = _int(latest.metadata.get("iteration"))
    run.env_steps = _int(latest.metadata.get("env_steps"))
    say(session, f"resuming {run.name} from version {latest.version} (seed {run.seed})")
    return reg.load(run.name, latest.version)


def train(session, env, module, run: Run, iterations: int, every: int) -> None:
    """Policy-gradient updates; a snapshot with the mean return every ``every`` of them."""
    import torch

    optimizer = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE)
    last = run.iteration0 + iterations
    for it in range(run.iteration0 + 1, last + 1):
        batch = collect(env, module, EPISODES_PER_ITERATION, run.seed * 1000 + it * EPISODES_PER_ITERATION)
        run.env_steps += len(batch.actions)
        loss = update(module, optimizer, batch)
        mean_return = sum(batch.episode_returns) / len(batch.episode_returns)
        line = f"iteration {it:>3}  mean return {mean_return:6.1f}  loss {loss:7.3f}"
        if (it - run.iteration0) % every == 0 or it == last:
            metadata = {"iteration": it, "mean_return": round(mean_return, 2), "env_steps": run.env_steps,
                        "seed": run.seed}
            mv = session.registry.snapshot(run.name, module, metadata=metadata)
            run.snapshots[mv.version] = (mean_return, copy.deepcopy(module.state_dict()))
            line += f"  -> snapshot {run.name}:{mv.version}"
        say(session, line)


def report(session, name: str):
    """Print the versions table and the diff of the last two versions; return both."""
    reg = session.registry
    versions = reg.versions(name)
    say(session, "")
    say(session, show.versions_table(versions))
    if len(versions) < 2:
        return versions, None
    a, b = versions[-2].version, versions[-1].version
    result = reg.diff(name, a, b)
    say(session, f"\ndiff {name} {a} {b}:")
    say(session, str(result))
    return versions, result


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def check_best(session, env, name: str, best_state: dict, seed: int) -> dict:
    """Load ``rlreg://name@best`` via ``load_state_path`` and compare it with the best snapshot."""
    import torch

    with session.registry.bind():  # rlreg:// resolves on the demo's registry (no environment change)
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
