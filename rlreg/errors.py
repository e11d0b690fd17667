"""Errors raised by the command line itself (the rest come from ``registry``).

They sit in the one error tree (``registry.errors``), so ``registry.errorcodes`` maps them by
``isinstance`` like every other error.
"""

from __future__ import annotations

from registry.errors import InvalidEventError, InvalidReferenceError, InvalidSettingError, RegistryError
from registry.errors import IntegrityError as RegistryIntegrityError

__all__ = [
    "CLIError", "DamageFoundError", "DemoMismatchError", "InvalidMetadataError", "InvalidReferenceError",
    "InvalidSettingError",
]


class CLIError(RegistryError):
    """Base class of the command line's own errors (exit 4 unless a subclass says otherwise)."""


class InvalidMetadataError(CLIError, InvalidEventError):
    """``--metadata`` that is not a JSON object."""


class DamageFoundError(CLIError, RegistryIntegrityError):
    """``rlreg verify`` found objects that fail their digest (exit 8)."""


class DemoMismatchError(CLIError, RegistryIntegrityError):
    """The module loaded back by ``rlreg demo`` does not reproduce the snapshot's outputs (exit 8)."""
