"""MLflow on its SQLite backend: log_model + registering a model version, then load_model of it.

The module is RLlib's PPO module (the equal of rlreg's), logged with serialization_format="pickle"
(MLflow 3's default, "pt2", is an exported graph rather than a module) and pip_requirements given,
so MLflow does not spend seconds inferring them: both only make the peer faster. Run with the peers'
venv python; config as JSON on stdin, rows as one JSON list on stdout.
"""

from __future__ import annotations

from pathlib import Path

from peerlib import (
    emit, folder_bytes, guarded_stdout, perturb, quiet_environment, read_config, require,
    rllib_spec, row, runs, same_tensors, state_bytes, timed, timing_row,
)

SYSTEM = "MLflow log_model + register"
NAME = "bench-ppo"


def main() -> None:
    """Measure snapshot, load and repeated snapshots through MLflow; print the rows."""
    out = guarded_stdout()
    quiet_environment()
    require("torch", "gymnasium", "ray.rllib", "mlflow.pytorch")
    import mlflow
    import mlflow.pytorch

    config = read_config()
    work = Path(config["workdir"])
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    experiment = mlflow.create_experiment("bench", artifact_location=(work / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    module = rllib_spec(config).build()
    params, nbytes = state_bytes(module)

    def log(_: int) -> int:
        info = mlflow.pytorch.log_model(module, name="model", registered_model_name=NAME,
                                        serialization_format="pickle", pip_requirements=["torch"])
        return int(info.registered_model_version)

    size_before = folder_bytes(work)
    snap_s, version = runs(config["repeats"], log, before=lambda i: perturb(module, i))
    written = (folder_bytes(work) - size_before) // config["repeats"]
    load_s, loaded = runs(config["repeats"],
                             lambda _: mlflow.pytorch.load_model(f"models:/{NAME}/{version}"))
    same_tensors(module, loaded)
    rows = [
        timing_row("snapshot", SYSTEM, snap_s, params=params, state_bytes=nbytes,
                   written_bytes=written, version=f"mlflow {mlflow.__version__}"),
        timing_row("load", "MLflow load_model", load_s, params=params),
    ]
    before, changed, seconds = folder_bytes(work), 0, 0.0
    for i in range(2, config["snapshots"] + 1):
        changed += perturb(module, i, max_bytes=config["small_tensor_bytes"])
        seconds += timed(lambda: log(i))[0]
    n = config["snapshots"] - 1
    rows.append(row("repeated snapshots", SYSTEM, "written_bytes", folder_bytes(work) - before, "B",
                    changed_bytes=changed, snapshots=n, seconds_each=seconds / n))
    emit(out, rows)


if __name__ == "__main__":
    main()
