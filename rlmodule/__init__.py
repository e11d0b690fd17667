"""rlmodule: RLlib's RLModule API without ray, with pickle-free checkpoints on fsspec URLs."""

from rlmodule.annotations import (
    DeveloperAPI,
    ExperimentalAPI,
    OverrideToImplementCustomLogic,
    OverrideToImplementCustomLogic_CallToSuperRecommended,
    PublicAPI,
    is_overridden,
    override,
)
from rlmodule.checker import (
    SpecDict,
    SpecType,
    TypeSpec,
    check_input_specs,
    check_output_specs,
    convert_to_canonical_format,
)
from rlmodule.catalog import MODEL_DEFAULTS, Catalog
from rlmodule.checkpoints import Checkpointable
from rlmodule.columns import (
    COMPONENT_LEARNER,
    COMPONENT_LEARNER_GROUP,
    COMPONENT_RL_MODULE,
    DEFAULT_MODULE_ID,
    DEFAULT_POLICY_ID,
    Columns,
    validate_module_id,
)
from rlmodule.deprecation import DEPRECATED_VALUE, Deprecated, deprecation_warning
from rlmodule.distributions import (
    Distribution,
    TorchCategorical,
    TorchDeterministic,
    TorchDiagGaussian,
    TorchDistribution,
    TorchMultiCategorical,
    TorchMultiDistribution,
    TorchSquashedGaussian,
)
from rlmodule.errors import (
    CheckpointError,
    CheckpointFormatError,
    CheckpointNotFoundError,
    ModelConfigError,
    PickleRefusedError,
    RLModuleError,
    SpaceSerializationError,
    SpecCheckingError,
    StateMismatchError,
    StateSerializationError,
    UntrustedClassError,
)
from rlmodule.multi_rl_module import (
    MultiRLModule,
    MultiRLModuleConfig,
    MultiRLModuleSpec,
    spec_from_dict,
    spec_to_dict,
)
from rlmodule.rl_module import RLModule, RLModuleConfig, RLModuleSpec
from rlmodule import rllib_checkpoint  # noqa: E402 - RLlib's checkpoints, read without unpickling
from rlmodule.sample_batch import SampleBatch
from rlmodule.serialization import (
    deserialize_type,
    gym_space_from_dict,
    gym_space_to_dict,
    serialize_type,
    space_from_dict,
    space_to_dict,
)
from rlmodule.spaces import FlexDict, Repeated, Simplex
from rlmodule.state import join_state, split_state
from rlmodule.torch_rl_module import TorchRLModule
from rlmodule.trust import resolve_class
from rlmodule.view_requirement import ViewRequirement

__all__ = [
    "MODEL_DEFAULTS", "Catalog", "Distribution", "TorchCategorical", "TorchDeterministic", "TorchDiagGaussian",
    "TorchDistribution", "TorchMultiCategorical", "TorchMultiDistribution", "TorchSquashedGaussian",
    "COMPONENT_LEARNER", "COMPONENT_LEARNER_GROUP", "COMPONENT_RL_MODULE", "DEFAULT_MODULE_ID",
    "DEFAULT_POLICY_ID", "DEPRECATED_VALUE", "CheckpointError", "CheckpointFormatError",
    "CheckpointNotFoundError", "Checkpointable", "Columns", "Deprecated", "DeveloperAPI",
    "ExperimentalAPI", "ModelConfigError", "MultiRLModule", "MultiRLModuleConfig", "MultiRLModuleSpec", "OverrideToImplementCustomLogic",
    "OverrideToImplementCustomLogic_CallToSuperRecommended", "PublicAPI", "RLModule",
    "RLModuleConfig", "RLModuleError", "RLModuleSpec", "SampleBatch", "SpaceSerializationError",
    "SpecCheckingError", "SpecDict", "SpecType", "StateMismatchError", "StateSerializationError",
    "TorchRLModule", "TypeSpec", "UntrustedClassError", "ViewRequirement", "check_input_specs",
    "check_output_specs", "convert_to_canonical_format", "deprecation_warning",
    "deserialize_type", "gym_space_from_dict", "gym_space_to_dict", "is_overridden",
    "join_state", "override", "resolve_class", "serialize_type", "spec_from_dict", "spec_to_dict", "split_state",
    "validate_module_id", "FlexDict", "PickleRefusedError", "Repeated", "Simplex", "space_from_dict", "space_to_dict",
]
