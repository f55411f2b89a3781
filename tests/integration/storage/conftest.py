"""Storage tests run against SQLite always and PostgreSQL when TEST_DATABASE_URL is set.

One migrated database per module and backend; every test starts from empty tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from server.domain.exceptions import ReconException, Severity, Status
from server.domain.history import Action, HistoryEntry
from server.storage.engine import is_sqlite, make_engine
from server.storage.migrate import upgrade
from server.storage.tables import metadata
from server.storage.uow import SqlUnitOfWorkFactory
from tests.support.databases import database_urls


@pytest.fixture(scope="module", params=database_urls())
def migrated_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with request.param(tmp_path_factory.mktemp("db")) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def engine(migrated_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_url, pool_size=5)
    yield engine
    engine.dispose()


@pytest.fixture
def uow(engine: Engine) -> SqlUnitOfWorkFactory:
    """A unit-of-work factory on empty tables."""
    with engine.begin() as conn:
        if is_sqlite(engine):
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
        else:
            names = ", ".join(t.name for t in metadata.sorted_tables)
            conn.exec_driver_sql(f"TRUNCATE {names}")
    return SqlUnitOfWorkFactory(engine)


def build_exception(tenant_id: str = "tenant-a", **fields: Any) -> ReconException:
    now = fields.pop("now", None) or datetime.now(UTC)
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "transaction_id": "txn-1",
        "severity": Severity.LOW,
        "status": Status.OPEN,
        "created_at": now,
        "updated_at": now,
        "occurred_at": now,
    }
    values.update(fields)
    return ReconException(**values)


def build_history(exception: ReconException, created_at: datetime, **changes: Any) -> HistoryEntry:
    return HistoryEntry.record(
        exception.tenant_id, exception.id, Action.ASSIGN, "actor-1", created_at, changes
    )


@pytest.fixture
def new_exception() -> Callable[..., ReconException]:
    return build_exception


@pytest.fixture
def new_history() -> Callable[..., HistoryEntry]:
    return build_history
