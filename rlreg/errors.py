"""Errors raised by the command line itself (the rest come from ``registry``)."""

from __future__ import annotations


class CLIError(Exception):
    """Base class of the command line's own errors."""


class InvalidReferenceError(CLIError, ValueError):
    """A ``NAME[:VERSION|@ALIAS]`` reference that cannot be parsed."""


class InvalidMetadataError(CLIError, ValueError):
    """``--metadata`` that is not a JSON object."""


class DamageFoundError(CLIError):
    """``rlreg verify`` found objects that fail their digest."""


class DemoMismatchError(CLIError):
    """The module loaded back by ``rlreg demo`` does not reproduce the snapshot's outputs."""


class InvalidSettingError(CLIError, ValueError):
    """An ``RLREG_*`` environment variable whose value is not one the command line knows."""
