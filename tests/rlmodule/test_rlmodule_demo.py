"""`python -m rlmodule.demo`: build, run, save, restore, compare bit for bit."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rlmodule import demo

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_as_a_module_and_reports_a_bit_exact_match(tmp_path):
    ckpt = tmp_path / "ckpt"
    proc = subprocess.run(
        [sys.executable, "-m", "rlmodule.demo", "--steps", "40", "--path", str(ckpt)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: the restored module matches the original bit for bit" in proc.stdout
    assert "state    10/10 tensors identical" in proc.stdout
    assert "replay   40/40 actions identical with seed 0" in proc.stdout
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "class_and_ctor_args.json", "metadata.json", "module_state.json",
        "module_state.safetensors",
    ]


def test_demo_on_memory_url_matches(capsys):
    path = f"memory://{uuid.uuid4().hex}"
    assert demo.main(["--steps", "20", "--seed", "3", "--path", path]) == 0
    out = capsys.readouterr().out
    assert "forward_train        on 20 observations: action_dist_inputs, vf_preds: identical" in out


def test_demo_fails_when_the_restored_module_differs(capsys):
    path = f"memory://{uuid.uuid4().hex}"
    assert demo.main(["--steps", "20", "--tamper", "--path", path]) == 1
    out = capsys.readouterr().out
    assert "state    9/10 tensors identical; DIFFER: ['encoder.encoder.net.mlp.0.weight']" in out
    assert "MISMATCH: the restored module differs from the original" in out


def test_demo_refuses_a_non_positive_step_count(capsys):
    with pytest.raises(SystemExit) as exc:
        demo.main(["--steps", "0"])
    assert exc.value.code == 2
    assert "--steps must be a positive number, got 0" in capsys.readouterr().err
