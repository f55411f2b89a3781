"""Rate-limit counters in the shared database, so every replica counts the same calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from server.storage.tables import rate_limit_counters as counters
from server.storage.uow import SqlUnitOfWorkFactory

if TYPE_CHECKING:
    from server.services.rate_limit import CounterStore


class SqlCounterStore:
    """One short transaction per call, never joined to the call's own transaction (a counted call
    stays counted even when the call then fails). A refused call is counted and taken back in that
    transaction: the counter's row stays locked in between, so concurrent hits see one another."""

    def __init__(self, uow: SqlUnitOfWorkFactory) -> None:
        self._uow = uow
        dialect = postgresql if uow.engine.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert

    def hit(
        self, tenant_id: str, bucket: str, window: int, admit: Callable[[int, int], bool]
    ) -> tuple[int, int]:
        key = {"tenant_id": tenant_id, "bucket": bucket}
        upsert = (
            self._insert(counters)
            .values(**key, window_index=window, calls=1)
            .on_conflict_do_update(
                index_elements=["tenant_id", "bucket", "window_index"], set_={"calls": counters.c.calls + 1}
            )
            .returning(counters.c.calls)
        )
        # Inside an open call transaction (a keyed /v1/bulk) a separate write would wait on SQLite's
        # single writer lock held by that very transaction: join it instead.
        with self._uow(write=True, join=self._uow.in_transaction()) as uow:
            current = uow.connection.execute(upsert).scalar_one()
            rows = uow.connection.execute(
                sa.select(counters.c.window_index, counters.c.calls).where(
                    counters.c.tenant_id == tenant_id,
                    counters.c.bucket == bucket,
                    counters.c.window_index < window,
                )
            ).all()
            previous = next((row.calls for row in rows if row.window_index == window - 1), 0)
            if not admit(current, previous):
                uow.connection.execute(
                    sa.update(counters)
                    .where(
                        counters.c.tenant_id == tenant_id,
                        counters.c.bucket == bucket,
                        counters.c.window_index == window,
                    )
                    .values(calls=counters.c.calls - 1)
                )
            if current == 1 and any(row.window_index < window - 1 for row in rows):
                # First call of a new minute: windows before the previous one are of no more use.
                uow.connection.execute(
                    sa.delete(counters).where(
                        counters.c.tenant_id == tenant_id,
                        counters.c.bucket == bucket,
                        counters.c.window_index < window - 1,
                    )
                )
        return current, previous


# Conformance: mypy checks the adapter against the protocol it implements (nothing runs).
if TYPE_CHECKING:

    def _conforms(store: SqlCounterStore) -> CounterStore:
        return store
