"""Alembic environment: an offline path (SQL script) and an online path, nothing else.

Online, the connection comes from ``config.attributes["connection"]`` (what ``registry.db`` passes),
else from ``sqlalchemy.url`` or ``RLREG_DB_URL``. SQLite gets batch mode for its limited ALTER TABLE.
"""

from __future__ import annotations


from alembic import context

from registry import db
from storage import config as settings
from registry.schema import metadata

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or settings.db_url()
    if not url:
        raise RuntimeError("no database URL: set sqlalchemy.url or RLREG_DB_URL")
    return db.normalize_url(url).render_as_string(hide_password=False)


def _include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Compare a table only on the backends it exists on (``info["dialects"]``, see registry.schema)."""
    if type_ != "table":
        return True
    table = compare_to if reflected else obj
    dialects = getattr(table, "info", {}).get("dialects") if table is not None else None
    return dialects is None or context.get_context().dialect.name in dialects


def run_migrations_offline() -> None:
    """Emit the migration SQL for the configured URL without connecting."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on a new engine for the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = db.create_engine(_url())
    try:
        with engine.begin() as conn:
            _run_on(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
