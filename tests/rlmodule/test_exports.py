"""The public names of `rlmodule`."""

from __future__ import annotations

import pytest

import rlmodule

REQUIRED = {
    "RLModuleSpec", "RLModuleConfig", "RLModule", "MultiRLModule", "MultiRLModuleSpec",
    "MultiRLModuleConfig", "TorchRLModule", "Checkpointable", "Columns", "DEFAULT_MODULE_ID",
    "ViewRequirement", "SampleBatch", "gym_space_to_dict", "gym_space_from_dict", "serialize_type",
    "deserialize_type", "check_input_specs", "check_output_specs", "convert_to_canonical_format",
    "SpecType", "override", "OverrideToImplementCustomLogic",
    "OverrideToImplementCustomLogic_CallToSuperRecommended", "Deprecated", "spec_to_dict",
    "spec_from_dict", "split_state", "join_state", "resolve_class", "UntrustedClassError",
    "StateSerializationError", "Catalog", "Distribution", "TorchCategorical", "TorchDiagGaussian",
    "TorchDeterministic", "TorchMultiCategorical", "TorchSquashedGaussian", "TorchMultiDistribution",
    "TorchDistribution",
}


def test_all_is_complete_and_importable():
    assert REQUIRED <= set(rlmodule.__all__)
    assert all(hasattr(rlmodule, name) for name in rlmodule.__all__)
    assert rlmodule.DEFAULT_MODULE_ID == "default_policy"


def test_columns_and_sample_batch_names():
    assert rlmodule.Columns.OBS == "obs" and rlmodule.Columns.NEXT_OBS == "new_obs"
    assert rlmodule.Columns.ACTION_DIST_INPUTS == "action_dist_inputs"
    assert rlmodule.SampleBatch.PREV_ACTIONS == "prev_actions"
    assert rlmodule.SampleBatch.PREV_REWARDS == "prev_rewards"


def test_errors_derive_from_builtins():
    assert issubclass(rlmodule.CheckpointNotFoundError, FileNotFoundError)
    assert issubclass(rlmodule.UntrustedClassError, ValueError)
    assert issubclass(rlmodule.ModelConfigError, TypeError)
    assert issubclass(rlmodule.SpecCheckingError, rlmodule.RLModuleError)


def test_override_checks_its_claim():
    class Base:
        def f(self):
            pass

    @rlmodule.override(Base)
    def f(self):
        pass

    with pytest.raises(NameError, match="does not override any method of"):
        @rlmodule.override(Base)
        def g(self):
            pass
