"""Alembic environment, driven by server.storage.migrate (no alembic.ini at runtime).

migrate.upgrade() hands over an open connection in config.attributes["connection"]; running the
`alembic` command line against a URL also works (sqlalchemy.url in the config).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from server.storage.engine import make_engine
from server.storage.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    # One transaction for the version check and every migration: on PostgreSQL the DDL is
    # transactional, and on SQLite a write connection begins with BEGIN IMMEDIATE, so concurrent
    # migrators queue and the later ones find the schema already at head. Configuring inside the
    # transaction makes Alembic treat it as external: it neither begins nor commits its own (it
    # would commit per migration on SQLite otherwise).
    with connection.begin():
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no database URL: set sqlalchemy.url in the Alembic configuration")
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            _run(connection.execution_options(write=True))
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported")
run_migrations_online()
