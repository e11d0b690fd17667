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


def test_a_postgresql_deadlock_is_a_conflict_to_retry_and_other_errors_keep_their_mapping():
    """PostgreSQL rolled the transaction back: a conflict (the registry's writes retry it), not "unavailable".
    A serialization failure stays "unavailable" (a hot standby cancels reads with it: a tail reconnects),
    and an error SQLAlchemy raises itself (a pool timeout: no driver error inside) is still mapped."""
    import psycopg.errors
    import sqlalchemy.exc

    from registry import db

    with pytest.raises(errors.ConflictError, match="clashed with this one, which was rolled back") as info:
        with db.translate_errors("appending"):
            raise psycopg.errors.DeadlockDetected("deadlock detected")
    assert not isinstance(info.value, errors.DatabaseUnavailableError)
    with pytest.raises(errors.DatabaseUnavailableError):
        with db.translate_errors("reading"):
            raise psycopg.errors.SerializationFailure("canceling statement due to conflict with recovery")
    with pytest.raises(errors.RegistryError, match="QueuePool limit"):
        with db.translate_errors("reading"):
            raise sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached")
