"""RLlib's checkpointing of its PPO module: save_to_path; build + restore_from_path, or from_checkpoint.

Run by the registry benchmark with the peers' venv python; reads its config as JSON on stdin and
prints the rows as one JSON list on stdout.
"""

from __future__ import annotations

from pathlib import Path

from peerlib import (
    emit, folder_bytes, guarded_stdout, perturb, quiet_environment, read_config, require,
    rllib_spec, row, runs, same_tensors, state_bytes, timed, timing_row,
)

SYSTEM = "RLlib save_to_path"


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

    snap_s, path = runs(repeats, save, before=lambda i: perturb(module, i))

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
