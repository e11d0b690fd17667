"""RLlib's checkpointing of its PPO module: save_to_path; build + restore_from_path, or from_checkpoint.

Run by the registry benchmark with the peers' venv python; reads its config as JSON on stdin and
prints the rows as one JSON list on stdout.
"""

from __future__ import annotations

from pathlib import Path

from peerlib import (
    emit, folder_bytes, fsync_tree, guarded_stdout, perturb, quiet_environment, read_config, require,
    rllib_spec, row, runs, same_tensors, state_bytes, timed, timing_row,
)

SYSTEM = "RLlib save_to_path"
DURABLE_SYSTEM = "RLlib save_to_path + fsync"  # like for like with rlreg's durable snapshot


def main() -> None:
    """Measure snapshot, load and repeated snapshots of RLlib's PPO module; print the rows."""
    out = guarded_stdout()
    quiet_environment()
    require("torch", "gymnasium", "ray.rllib")
    from ray.rllib.core.rl_module.rl_module import RLModule

    config = read_config()
    work = Path(config["workdir"])
    spec = rllib_spec(config)
    module = spec.build()
    params, nbytes = state_bytes(module)
    repeats = config["repeats"]

    def save(i: int) -> Path:
        path = work / f"v{i}"
        module.save_to_path(str(path))
        return path

    def save_durable(i: int) -> Path:
        path = work / f"d{i}"
        module.save_to_path(str(path))
        fsync_tree(path)
        return path

    snap_s, durable_s = [], []
    for i in range(repeats):  # the two take turns
        perturb(module, i)
        snap_s += runs(1, lambda _: save(i))[0]
        durable_s += runs(1, lambda _: save_durable(i))[0]
    path = work / f"v{repeats - 1}"

    def load(_: int):
        fresh = spec.build()
        fresh.restore_from_path(str(path))
        return fresh

    load_s, loaded = runs(repeats, load)
    same_tensors(module, loaded)
    restore_s, restored = runs(repeats, lambda _: RLModule.from_checkpoint(str(path)))
    same_tensors(module, restored)
    rows = [
        timing_row("snapshot", SYSTEM, snap_s, params=params, state_bytes=nbytes,
                   written_bytes=folder_bytes(path), version=_version()),
        timing_row("snapshot", DURABLE_SYSTEM, durable_s, params=params, state_bytes=nbytes, version=_version()),
        timing_row("load", "RLlib build + restore_from_path", load_s, params=params),
        timing_row("load", "RLlib RLModule.from_checkpoint", restore_s, params=params),
    ]
    rows += repeated(module, work, config)
    emit(out, rows)


def repeated(module, work: Path, config: dict) -> list[dict]:
    """Snapshots 2..N in which only the tensors of at most small_tensor_bytes change."""
    before, changed, seconds = folder_bytes(work), 0, 0.0
    for i in range(2, config["snapshots"] + 1):
        changed += perturb(module, i, max_bytes=config["small_tensor_bytes"])
        seconds += timed(lambda: module.save_to_path(str(work / f"r{i}")))[0]
    n = config["snapshots"] - 1
    return [row("repeated snapshots", SYSTEM, "written_bytes", folder_bytes(work) - before, "B",
                changed_bytes=changed, snapshots=n, seconds_each=seconds / n)]


def _version() -> str:
    import ray

    return f"ray {ray.__version__}"


if __name__ == "__main__":
    main()
