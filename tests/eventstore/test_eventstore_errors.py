"""The error tree: every class under its root and the builtin it resembles; the docstring draws them all."""

from __future__ import annotations

import pytest
import storage.errors

from registry import errors


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (errors.NotFoundError, (errors.RegistryError, LookupError)),
        (errors.ConflictError, (errors.RegistryError,)),
        (errors.IntegrityError, (errors.RegistryError, storage.errors.IntegrityError, ValueError)),
        (errors.InvalidNameError, (errors.RegistryError, ValueError)),
        (errors.InvalidEventError, (errors.RegistryError, ValueError)),
        (errors.SchemaVersionError, (errors.RegistryError,)),
        (errors.DatabaseUnavailableError, (errors.RegistryError, ConnectionError)),
    ],
)
def test_error_classes_derive_from_root_and_builtin(cls, bases):
    assert all(issubclass(cls, base) for base in bases), cls.__mro__


def test_docstring_draws_every_exported_error_class():
    classes = [n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, Exception)]
    missing = [n for n in classes if n not in errors.__doc__ and n != "StorageIntegrityError"]
    assert not missing, f"errors missing from the drawn tree: {missing}"
    assert errors.StorageError is storage.errors.StorageError


@pytest.mark.parametrize("name", ["DeadlockDetected", "SerializationFailure"])
def test_a_postgresql_deadlock_or_serialization_failure_is_a_conflict_to_retry(name):
    """PostgreSQL rolled the transaction back: a conflict (retried by the registry's writes), not "unavailable"."""
    import psycopg.errors

    from registry import db

    with pytest.raises(errors.ConflictError, match="clashed with this one, which was rolled back") as info:
        with db.translate_errors("appending"):
            raise getattr(psycopg.errors, name)("it clashed")
    assert not isinstance(info.value, errors.DatabaseUnavailableError)
