"""What a statement costs the database: the statements a block sends, and the plan of one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from server.storage.engine import is_sqlite


@contextmanager
def sent_to(engine: Engine, table: str) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and the parameters of their first row) sent about `table` within the block."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, _: Any, executemany: bool) -> None:
        if f"FROM {table}" in statement or statement.startswith(f"UPDATE {table}"):
            sent.append((statement, parameters[0] if executemany else parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def index_plan(engine: Engine, statement: str, parameters: Any) -> str:
    """The plan of a statement as text (EXPLAIN, without running it). On PostgreSQL sequential scans
    are switched off: on the small tables of a test a scan is rightly cheapest, and what is checked
    is which index a lookup takes."""
    with engine.connect() as conn:
        if is_sqlite(engine):
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            return " ".join(str(r[-1]) for r in rows)
        conn.exec_driver_sql("SET enable_seqscan = off")
        return " ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
