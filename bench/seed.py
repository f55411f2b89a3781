"""Seeding many exceptions fast, straight into the database (scenario 6: up to 1M in one tenant).

The `exceptions` table is the only one get and list read. Rows go in through the schema of
server/storage/tables.py, so the stored formats are the application's own:
- SQLite: SQLAlchemy Core executemany in batches of 50k (the column types of server/storage/types.py
  do the conversions), with the table's indexes dropped first and built again after (one sort per
  index instead of a b-tree insert per row and index: about 3x faster at 1M rows).
- PostgreSQL: COPY ... FROM STDIN through psycopg, the same index drop/rebuild, then ANALYZE (the
  autovacuum of a real database would have done it; SQLite gets no ANALYZE, as in production).
The indexes are rebuilt from the same SQLAlchemy definitions the migrations must match.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from server.storage.engine import make_engine
from server.storage.tables import exceptions as t

BATCH = 50_000
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
DUE_IN_HOURS = {1: 168, 2: 120, 3: 72, 4: 24}  # by severity value, LOW..CRITICAL
REASONS = ("amount mismatch", "missing in ledger", "duplicate payment", "currency mismatch")


def _rows(tenant: str, start: int, count: int) -> Iterator[dict[str, Any]]:
    for n in range(start, start + count):
        # Newest first in insertion order, a few seconds apart; one of every 4 statuses and severities.
        created = EPOCH - timedelta(seconds=3 * n)
        yield {
            "id": str(uuid.uuid4()),
            "tenant_id": tenant,
            "transaction_id": f"seed-{n}",
            "severity": 1 + n % 4,
            "status": 1 + (n // 4) % 4,
            "reason": REASONS[n % len(REASONS)],
            "amount": Decimal(n % 1_000_000) / 100,
            "currency": "USD",
            "source": "bench-seed",
            "assigned_to": f"agent-{n % 50}" if (n // 4) % 4 == 1 else None,
            # The default SLA tiers (API.md §8): CRITICAL 24 h ... LOW 168 h after occurred_at.
            "due_at": created + timedelta(hours=DUE_IN_HOURS[1 + n % 4]),
            "external_system": None,
            "external_issue_id": None,
            "resolution_notes": None,
            "resolution_reason": None,
            "metadata_json": {},
            "created_at": created,
            "updated_at": created,
            "occurred_at": created,
            "due_at_explicit": False,
            "escalated_at": None,
        }


def _chunks(tenant: str, start: int, count: int) -> Iterator[list[dict[str, Any]]]:
    rows = _rows(tenant, start, count)
    while chunk := [row for _, row in zip(range(BATCH), rows, strict=False)]:
        yield chunk


def seed_exceptions(
    database_url: str, tenant: str, count: int, *, start: int = 0, sample: int = 1000
) -> list[str]:
    """Adds `count` exceptions to `tenant` (numbered from `start`); returns up to `sample` of their
    ids, spread evenly over them."""
    engine = make_engine(database_url, pool_size=1)
    every = max(1, count // sample)
    picked: list[str] = []
    try:
        with engine.begin() as conn:
            for index in t.indexes:
                index.drop(conn)
            for chunk in _chunks(tenant, start, count):
                picked += [row["id"] for row in chunk[::every]]
                if engine.dialect.name == "postgresql":
                    _copy(conn, chunk)
                else:
                    conn.execute(sa.insert(t), chunk)
            for index in t.indexes:
                index.create(conn)
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE exceptions")
    finally:
        engine.dispose()
    return picked[:sample]


def _copy(conn: sa.Connection, chunk: list[dict[str, Any]]) -> None:
    columns = [c.name for c in t.columns]
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(f"COPY exceptions ({', '.join(columns)}) FROM STDIN") as copy:
        for row in chunk:
            copy.write_row([json.dumps(row[c]) if c == "metadata_json" else row[c] for c in columns])
