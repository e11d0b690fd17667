"""`make rllib-check`: real RLlib reads what rlreg writes for it.

1. Imports the committed RLlib 2.35 and 2.60 fixtures (tests/fixtures/rllib) into a temporary
   registry (`import_checkpoint(..., from_rllib=True)`) and exports each with `format="rllib"`.
2. In `.venv-peers` (RLlib 2.60): `RLModule.from_checkpoint` of each export must be RLlib's own
   class with forward outputs identical to rlreg's, also after zeroing the weights and
   `restore_from_path`.
3. In `.venv-peers` and, if present, `.venv-peers-235` (RLlib 2.35): `gym_space_from_dict` reads the
   dict rlreg writes for every space kind RLlib knows (tests/rlmodule/space_kinds.py).
Prints a report; exits 1 on any mismatch, 0 otherwise (a missing venv is reported and skipped).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "rllib"
VENVS = {"2.60": ROOT / ".venv-peers", "2.35": ROOT / ".venv-peers-235"}


def _exports(work: Path) -> dict:
    from registry import Registry

    cases = {}
    with Registry(f"sqlite:///{work / 'r.db'}", str(work / "blobs")) as reg:
        for fixture in sorted(FIXTURES.glob("ray-*")):
            obs = json.loads((fixture / "expected.json").read_text())["obs"]
            for kind in ("ppo_cartpole", "multi"):
                name = f"{fixture.name}-{kind}".replace(".", "-")
                reg.import_checkpoint(name, fixture / kind, from_rllib=True)
                path = work / "exports" / name
                reg.export(name, None, path, format="rllib")
                module = reg.load(name)
                subs = {mid: module[mid] for mid in module.keys()} if kind == "multi" else {"": module}
                with torch.no_grad():
                    logits = {mid: m.forward_inference({"obs": torch.tensor(obs)})["action_dist_inputs"].tolist()
                              for mid, m in subs.items()}
                cases[name] = {"path": str(path), "obs": obs, "action_dist_inputs": logits}
    return cases


def _spaces() -> dict:
    sys.path.insert(0, str(ROOT / "tests" / "rlmodule"))
    from space_kinds import space_kinds

    from rlmodule import gym_space_to_dict

    return {k: gym_space_to_dict(s) for k, s in space_kinds().items() if not k.endswith("_rlreg_only")}


def _peer(python: Path, config: dict) -> dict:
    proc = subprocess.run([str(python), str(ROOT / "bench" / "peers" / "rllib_check_peer.py")],
                          input=json.dumps(config), capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise RuntimeError(f"{python} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _failures(label: str, result: dict, spaces: dict) -> list[str]:
    bad = []
    for kind, got in result["spaces"].items():
        want = "Text" if kind == "text" else None
        ok = "class" in got and (want is None or got["class"] == want)
        print(f"  [{label}] space {kind:<22} {'ok ' + got['class'] if ok else 'FAIL ' + str(got)}")
        bad += [] if ok else [f"{label}: space {kind}: {got}"]
    for name, got in result["checkpoints"].items():
        same = (all(got["from_checkpoint_identical"].values()) and got["zeroed_differs"]
                and all(got["restore_from_path_identical"].values()))
        print(f"  [{label}] {name:<28} {got['class'].rsplit('.', 1)[-1]:<24} "
              f"from_checkpoint identical: {got['from_checkpoint_identical']}, "
              f"restore_from_path identical: {got['restore_from_path_identical']}")
        bad += [] if same and got["class"].startswith("ray.rllib.") else [f"{label}: {name}: {got}"]
    return bad


def main() -> int:
    """Run the checks; print the report; 1 if anything differs."""
    spaces = _spaces()
    failures, ran = [], 0
    with tempfile.TemporaryDirectory(prefix="rlreg-rllib-check-") as work:
        cases = _exports(Path(work))
        for label, venv in VENVS.items():
            python = venv / "bin" / "python"
            if not python.exists():
                print(f"rllib-check: RLlib {label}: {venv} not installed, skipped")
                continue
            config = {"spaces": spaces, "checkpoints": cases if label == "2.60" else {}}
            result = _peer(python, config)
            print(f"RLlib {result['ray_version']} ({venv.name}):")
            failures += _failures(result["ray_version"], result, spaces)
            ran += 1
    print(f"rllib-check: {ran} RLlib version(s), {len(failures)} failure(s)")
    for f in failures:
        print(f"  FAIL {f}")
    return 1 if failures or not ran else 0


if __name__ == "__main__":
    sys.exit(main())
