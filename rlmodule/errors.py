"""The rlmodule branch of the error tree; each class also derives from the builtin it resembles.

    RLModuleError
    ├── UntrustedClassError (ValueError)       a class path the trusted-class rule refuses
    ├── SpaceSerializationError (ValueError)   a gym space (or its dict) we cannot encode/decode
    ├── ModelConfigError (TypeError)           a model_config_dict value that is not JSON
    ├── StateSerializationError (ValueError)   a state leaf that is neither tensor nor JSON
    ├── StateMismatchError (ValueError)        a tensor whose name/shape/dtype does not fit the module
    ├── CheckpointError (ValueError)           a checkpoint we cannot write or read
    │   ├── CheckpointNotFoundError (FileNotFoundError)  missing or partial checkpoint folder
    │   └── CheckpointFormatError                        unknown format/version or a malformed file
    │       └── PickleRefusedError                       a pickle holding what the pickle-free decoder refuses
    └── SpecCheckingError (ValueError)         forward-pass data that does not match the specs
"""

from __future__ import annotations


class RLModuleError(Exception):
    """Base of every error raised by rlmodule."""


class UntrustedClassError(RLModuleError, ValueError):
    """A class path that may not be (or cannot be) resolved under the trusted-class rule."""


class SpaceSerializationError(RLModuleError, ValueError):
    """A gym space, or a space dict, that cannot be encoded or decoded."""


class ModelConfigError(RLModuleError, TypeError):
    """A model config that is not JSON (e.g. holds a callable)."""


class StateSerializationError(RLModuleError, ValueError):
    """A state leaf that is neither a tensor nor JSON."""


class StateMismatchError(RLModuleError, ValueError):
    """A state tensor whose shape or dtype does not fit the module."""


class CheckpointError(RLModuleError, ValueError):
    """A checkpoint that cannot be written or read."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A missing or partial checkpoint folder."""


class CheckpointFormatError(CheckpointError):
    """A checkpoint in a format or version we do not read, or with a malformed file."""


class PickleRefusedError(CheckpointFormatError):
    """A pickle (of an RLlib checkpoint) holding a global, opcode or value we never rebuild."""


class SpecCheckingError(RLModuleError, ValueError):
    """Inputs or outputs of a forward pass that do not match the module's specs."""
