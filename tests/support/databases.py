"""Throwaway databases for tests: a SQLite file, or a uniquely named PostgreSQL database.

PostgreSQL tests run only when TEST_DATABASE_URL is set; each gets its own database (created with
CREATE DATABASE and dropped afterwards), so concurrent test runs sharing one server never meet.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

ENV_VAR = "TEST_DATABASE_URL"

# A factory takes a temporary directory and gives a context manager yielding an empty database URL.
DatabaseFactory = Callable[[Path], AbstractContextManager[str]]


def fresh_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'reconrouter.db'}"


@contextmanager
def fresh_postgres_url(base_url: str) -> Iterator[str]:
    """Creates an empty database next to the one `base_url` names, yields its URL, drops it."""
    base = make_url(base_url)
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                # FORCE ends sessions a test left open (PostgreSQL 13+).
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@contextmanager
def sqlite_database(tmp_path: Path) -> Iterator[str]:
    yield fresh_sqlite_url(tmp_path)


def postgres_database(tmp_path: Path) -> AbstractContextManager[str]:
    return fresh_postgres_url(os.environ[ENV_VAR])


def database_urls() -> list:
    """Parameters for a fixture: SQLite always, PostgreSQL when TEST_DATABASE_URL is set.

    @pytest.fixture(params=database_urls())
    def url(request, tmp_path):
        with request.param(tmp_path) as url:
            yield url
    """
    return [
        pytest.param(sqlite_database, id="sqlite"),
        pytest.param(
            postgres_database,
            id="postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not os.environ.get(ENV_VAR), reason=f"{ENV_VAR} is not set"),
            ],
        ),
    ]
