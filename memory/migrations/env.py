"""Alembic environment for session memory.

The app runs migrations through `memory.database.Database.upgrade`, which hands over its own connection
(already in a locked transaction) in `config.attributes["connection"]`. Without one, this file connects
to `sqlalchemy.url` from the config, or to the configured `VITRON_DATABASE_URL` / default SQLite file.

To write a new migration from a checkout (there is no alembic.ini; the config is built in code)::

    python -c "from alembic import command; from memory.database import alembic_config; \
command.revision(alembic_config('sqlite:///dev.db'), 'what changed', autogenerate=True)"

Then edit the file under `memory/migrations/versions/`: keep it self-contained (no imports of models)
and test it with `python -m pytest tests/memory/test_migrations.py` on SQLite and PostgreSQL.
"""

from __future__ import annotations

from alembic import context

from memory.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=kwargs.pop("dialect_name", None) == "sqlite",
        **kwargs,
    )


def run_offline() -> None:
    """Print the SQL instead of running it (`alembic upgrade --sql`)."""
    from memory.database import normalise_url, settings_url

    url = normalise_url(config.get_main_option("sqlalchemy.url") or settings_url())
    _configure(url=url, literal_binds=True, dialect_name=url.get_backend_name())
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection, dialect_name=connection.dialect.name)
        with context.begin_transaction():  # a no-op inside the caller's transaction
            context.run_migrations()
        return

    from memory.database import create_engine_for, settings_url

    engine = create_engine_for(config.get_main_option("sqlalchemy.url") or settings_url())
    try:
        with engine.connect() as conn:
            _configure(connection=conn, dialect_name=conn.dialect.name)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
