"""rlmodule: RLlib's RLModule API without ray, with pickle-free checkpoints on fsspec URLs.

Names are imported on first use (PEP 562): importing a light submodule (``rlmodule.errors``) does
not pull in torch, so the command line's read commands never import it.
"""

from __future__ import annotations

from storage import lazy

_NAMES = {  # submodule: the names it gives this package
    "rlmodule.annotations": (
        "DeveloperAPI ExperimentalAPI OverrideToImplementCustomLogic "
        "OverrideToImplementCustomLogic_CallToSuperRecommended PublicAPI is_overridden override"
    ),
    "rlmodule.checker": (
        "SpecDict SpecType TypeSpec check_input_specs check_output_specs convert_to_canonical_format"
    ),
    "rlmodule.catalog": "MODEL_DEFAULTS Catalog",
    "rlmodule.checkpoints": "Checkpointable",
    "rlmodule.columns": (
        "COMPONENT_LEARNER COMPONENT_LEARNER_GROUP COMPONENT_RL_MODULE DEFAULT_MODULE_ID "
        "DEFAULT_POLICY_ID Columns validate_module_id"
    ),
    "rlmodule.deprecation": "DEPRECATED_VALUE Deprecated deprecation_warning",
    "rlmodule.distributions": (
        "Distribution TorchCategorical TorchDeterministic TorchDiagGaussian TorchDistribution "
        "TorchMultiCategorical TorchMultiDistribution TorchSquashedGaussian"
    ),
    "rlmodule.errors": (
        "CheckpointError CheckpointFormatError CheckpointNotFoundError ModelConfigError RLModuleError "
        "PickleRefusedError SpaceSerializationError SpecCheckingError StateMismatchError "
        "StateSerializationError UntrustedClassError"
    ),
    "rlmodule.multi_rl_module": (
        "MultiRLModule MultiRLModuleConfig MultiRLModuleSpec spec_from_dict spec_key spec_to_dict"
    ),
    "rlmodule.rl_module": "RLModule RLModuleConfig RLModuleSpec",
    "rlmodule.sample_batch": "SampleBatch",
    "rlmodule.serialization": (
        "deserialize_type gym_space_from_dict gym_space_to_dict serialize_type space_from_dict space_to_dict"
    ),
    "rlmodule.spaces": "FlexDict Repeated Simplex",
    "rlmodule.state": "join_state split_state split_tensors",
    "rlmodule.torch_rl_module": "TorchRLModule",
    "rlmodule.trust": "resolve_class",
    "rlmodule.view_requirement": "ViewRequirement",
}
# rllib_checkpoint: RLlib's checkpoints, read without unpickling
__all__, __getattr__, __dir__ = lazy.exports(__name__, _NAMES, ("rllib_checkpoint",))
