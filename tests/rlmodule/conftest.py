"""Fixtures of the rlmodule tests: toy module specs and a unique memory:// folder."""

from __future__ import annotations

import uuid

import pytest
import torch

from rlmodule import RLModuleSpec
from rlmodule_toys import ACT_SPACE, OBS_SPACE, ToyTorchModule


@pytest.fixture
def toy_spec() -> RLModuleSpec:
    """A spec of the toy torch module with a Dict observation space."""
    return RLModuleSpec(module_class=ToyTorchModule, observation_space=OBS_SPACE,
                        action_space=ACT_SPACE, model_config_dict={"hidden": 6})


@pytest.fixture
def toy_module(toy_spec):
    """A built toy module with randomised buffers (so a restore is visible)."""
    torch.manual_seed(0)
    module = toy_spec.build()
    with torch.no_grad():
        module.steps += 7
        module.scale *= 3
        module.bf *= 1.5
        module.mask[1] = True
        module.codes[0] = 42
    return module


@pytest.fixture(params=["local", "memory"])
def ckpt_url(request, tmp_path) -> str:
    """A checkpoint folder URL on a local folder or on memory://, its path naming a bucket (a missing file
    there is missing, not a missing bucket: storage once told them apart by the word)."""
    if request.param == "local":
        return str(tmp_path / "my-bucket" / "ckpt")
    return f"memory://rlmodule-tests/bucket-{uuid.uuid4().hex}/ckpt"
