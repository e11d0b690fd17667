"""The registry benchmark: snapshot and load of a ~100 MB PPO module beside its peers.

Peers: `torch.save`/`torch.load` and raw safetensors (in this process, on the very same module; its
`save_file` also with an fsync of the file and its folder, durable as rlreg's snapshot is, the
baseline of the snapshot's target),
RLlib's own `save_to_path` (also + fsync)/`restore_from_path` of an equal PPO module and MLflow's `log_model` +
registered model version on its SQLite backend (both in `.venv-peers`, see `bench/peers/venv.py`).
Load means a module ready to use: built from its spec with the saved tensors loaded into it. Also:
the first load in a new process (rlreg vs the safetensors baseline), snapshots 2..N of a module whose
big tensors do not change (bytes written vs bytes changed), and the event-store rows of
`bench/eventstore.py` when it exists. `run(quick)` returns the rows and prints
the table; `python -m bench registry [--quick] [--json PATH]` runs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.peers import files, venv
from bench.peers.fresh_process import first_load_seconds
from bench.peers.peerlib import (
    folder_bytes, perturb, row, same_tensors, state_bytes, timed, timing_row,
)
from bench.registry_table import SUITE, finish, format_table

SIZES: dict[bool, dict[str, Any]] = {
    # 4 x 2048 hidden layers, separate policy and value encoders: 25.45 M float32 parameters, 101.8 MB.
    False: {"obs_dim": 64, "n_actions": 4, "repeats": 7, "snapshots": 20,
            "model_config": {"fcnet_hiddens": [2048] * 4, "vf_share_layers": False},
            "small_tensor_bytes": 64 << 10},
    True: {"obs_dim": 8, "n_actions": 4, "repeats": 1, "snapshots": 3,
           "model_config": {"fcnet_hiddens": [64, 64], "vf_share_layers": False},
           "small_tensor_bytes": 1 << 10},
}
PEER_TIMEOUT = {False: 1800.0, True: 300.0}
MODEL = "bench/ppo"


def ppo_spec(config: dict[str, Any]):
    """rlreg's PPO module spec: a Box observation, Discrete actions, the config's model_config."""
    import gymnasium as gym
    import numpy as np
    from rlmodule import RLModuleSpec
    from rlmodule.ppo import PPOCatalog, PPOTorchRLModule

    return RLModuleSpec(
        module_class=PPOTorchRLModule,
        catalog_class=PPOCatalog,
        observation_space=gym.spaces.Box(-1.0, 1.0, (config["obs_dim"],), np.float32),
        action_space=gym.spaces.Discrete(config["n_actions"]),
        model_config=dict(config["model_config"]),
    )


def process_write_bytes() -> int | None:
    """Bytes this process has passed to write() so far (Linux), else None."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RegistryContender:
    """rlreg's Registry on a SQLite file and a local blob folder."""

    snapshot_system = "rlreg Registry.snapshot"
    load_system = "rlreg Registry.load"

    def __init__(self, work: Path):
        from registry import Registry

        work.mkdir(parents=True, exist_ok=True)  # a SQLite URL's folder must exist (never made silently)
        self.blobs = work / "blobs"
        self.db_url = f"sqlite:///{work / 'rlreg.db'}"
        self.registry = Registry(self.db_url, str(self.blobs))
        self.version = 0

    def snapshot(self, module: torch.nn.Module) -> None:
        """Record the module as the next version."""
        self.version = self.registry.snapshot(MODEL, module).version

    def load(self) -> torch.nn.Module:
        """The last version, rebuilt from its spec and state (digests verified)."""
        return self.registry.load(MODEL, self.version)

    def written(self) -> int:
        """Bytes in the blob folder."""
        return folder_bytes(self.blobs) if self.blobs.exists() else 0

    def close(self) -> None:
        """Release the database."""
        self.registry.close()


def measure_in_process(spec, config: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    """rlreg, safetensors and torch.save on one module, interleaved in each of the repeats."""
    module = spec.build()
    ours = RegistryContender(work / "rlreg")
    base = files.FileContender("safetensors", spec.build, work / "safetensors")
    contenders = [ours, base, files.FileContender("torch", spec.build, work / "torch")]
    durable = files.FileContender("safetensors + fsync", spec.build, work / "safetensors-fsync")
    try:
        rows = _snapshots_and_loads(module, contenders, config, snapshots_only=[durable])
        rows += _first_loads(ours, base, config)
        rows += _repeated(module, contenders, config)
    finally:
        ours.close()
    params, nbytes = state_bytes(module)
    for r in rows:
        if r["system"] == ours.snapshot_system and r["case"] == "snapshot":
            r.update(params=params, state_bytes=nbytes)
    return rows


def _snapshots_and_loads(module, contenders, config, snapshots_only=()) -> list[dict[str, Any]]:
    """Snapshot and load timings, the contenders taking turns in each repeat (``snapshots_only``: no loads)."""
    snap: dict[Any, list[float]] = {c: [] for c in [*contenders, *snapshots_only]}
    load: dict[Any, list[float]] = {c: [] for c in contenders}
    first_written = {}
    for i in range(config["repeats"]):
        perturb(module, i)
        for c in snap:
            before = c.written()
            snap[c].append(timed(lambda: c.snapshot(module))[0])
            first_written.setdefault(c, c.written() - before)
    for _ in range(config["repeats"]):
        for c in contenders:
            seconds, loaded = timed(c.load)
            load[c].append(seconds)
            same_tensors(module, loaded)
            del loaded
    rows = [timing_row("snapshot", c.snapshot_system, snap[c], written_bytes=first_written[c]) for c in snap]
    return rows + [timing_row("load", c.load_system, load[c]) for c in contenders]


def _first_loads(ours: RegistryContender, base: files.FileContender, config) -> list[dict[str, Any]]:
    """The first load in a new process, by rlreg and by the safetensors baseline."""
    jobs = {
        "rlreg": {"db_url": ours.db_url, "storage_url": str(ours.blobs), "name": MODEL,
                  "version": ours.version},
        "safetensors": {"file": str(base.last), "config": config},
    }
    systems = {"rlreg": "rlreg Registry(...).load", "safetensors": base.load_system}
    return [timing_row("first load in a new process", systems[kind],
                       first_load_seconds(kind, job, config["repeats"]))
            for kind, job in jobs.items()]


def _repeated(module, contenders, config) -> list[dict[str, Any]]:
    """Snapshots 2..N where only tensors of at most small_tensor_bytes change."""
    before = {c: c.written() for c in contenders}
    wchar = {c: 0 for c in contenders}
    seconds = {c: 0.0 for c in contenders}
    changed = 0
    for i in range(2, config["snapshots"] + 1):
        changed += perturb(module, 100 + i, max_bytes=config["small_tensor_bytes"])
        for c in contenders:
            start = process_write_bytes()
            seconds[c] += timed(lambda: c.snapshot(module))[0]
            end = process_write_bytes()
            wchar[c] += (end - start) if start is not None and end is not None else 0
    n = config["snapshots"] - 1
    return [
        row("repeated snapshots", c.snapshot_system, "written_bytes", c.written() - before[c], "B",
            changed_bytes=changed, snapshots=n, seconds_each=seconds[c] / n, process_write_bytes=wchar[c])
        for c in contenders
    ]


def eventstore_rows(quick: bool) -> list[dict[str, Any]]:
    """The rows of bench/eventstore.py's suite, when it exists."""
    if importlib.util.find_spec("bench.eventstore") is None:
        print("registry bench: bench/eventstore.py not found; no event-store rows", file=sys.stderr)
        return []
    from bench import eventstore

    return [{"suite": "eventstore", **r} for r in eventstore.run(quick)]


def run(quick: bool = False, *, eventstore: bool = True) -> list[dict[str, Any]]:
    """Measure everything, print the table and return the rows (JSON-able dicts).

    The event-store rows (bench/eventstore.py's suite, which prints its own table) come last;
    `eventstore=False` leaves them out.
    """
    config = SIZES[quick]
    spec = ppo_spec(config)
    with tempfile.TemporaryDirectory(prefix="rlreg-bench-registry-") as tmp:
        rows = measure_in_process(spec, config, Path(tmp))
    for peer in venv.PEERS:
        rows += venv.run_peer(peer, config, PEER_TIMEOUT[quick])
    rows = finish(rows, config)
    print(format_table(rows, config, quick))
    return rows + (eventstore_rows(quick) if eventstore else [])


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.registry [--quick] [--json PATH]`."""
    parser = argparse.ArgumentParser(prog="python -m bench.registry", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny module, one repeat")
    parser.add_argument("--json", metavar="PATH", help="also write the rows to PATH as JSON")
    parser.add_argument("--no-eventstore", action="store_true", help="leave out the event-store rows")
    args = parser.parse_args(argv)
    rows = run(args.quick, eventstore=not args.no_eventstore)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


__all__ = ["SUITE", "run", "ppo_spec"]

if __name__ == "__main__":
    main()
