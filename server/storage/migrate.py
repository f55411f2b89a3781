"""Schema migrations, run programmatically (the CLI's `migrate` and server start-up call these)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from server.storage.engine import is_sqlite, make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# pg_advisory_lock key shared by every replica of this service (any constant unique to the app:
# these are the bytes "reconrt" as an int).
ADVISORY_LOCK_KEY = 0x7265636F6E7274

# Alembic keeps the running migration's context in module globals (alembic.context, alembic.op),
# so two upgrades in one process must not overlap; across processes the database locks serialise.
_IN_PROCESS = threading.Lock()


def alembic_config(url: str) -> Config:
    # stdout stays clean for the CLI (`tokens create` prints the token alone); Alembic's own
    # messages go through `logging`, which the application configures (to stderr).
    cfg = Config(stdout=sys.stderr)
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would mangle a '%' in a password.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def upgrade(url: str) -> None:
    """Brings the database to the newest revision; a no-op when it is there already.

    Safe when several replicas start together: on PostgreSQL a session advisory lock lets one
    migrate while the others wait and then find nothing to do; on SQLite the migration runs in a
    BEGIN IMMEDIATE transaction, which serialises it the same way.
    """
    engine = make_engine(url, pool_size=1)
    try:
        with _IN_PROCESS, engine.connect() as connection:
            connection = connection.execution_options(write=True)
            postgres = not is_sqlite(connection)
            if postgres:
                connection.execute(sa.select(sa.func.pg_advisory_lock(ADVISORY_LOCK_KEY)))
                connection.commit()  # the lock is per session; end the implicit transaction
            try:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
            finally:
                if postgres:
                    connection.rollback()
                    connection.execute(sa.select(sa.func.pg_advisory_unlock(ADVISORY_LOCK_KEY)))
                    connection.commit()
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The database's revision, or None when it has never been migrated."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
