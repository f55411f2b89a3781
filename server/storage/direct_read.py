"""A prebuilt single-row SELECT run straight on the DBAPI cursor: the hot point reads (GetException).

SQLAlchemy's execution path (connection events, execution context, result metadata) costs several
times the query itself for a one-row read by primary key, and more again with many busy threads:
docs/benchmarks.md measured it. This keeps SQLAlchemy's SQL and types and skips the rest: the
statement is compiled by SQLAlchemy once per dialect, every parameter goes through its column type's
bind processor and every column through its result processor, so values come back exactly as a Core
execution returns them (tests/integration/storage/test_direct_read.py compares the two).

A database error is not handled here: the read is run again through Core, which raises SQLAlchemy's
wrapped error (what server/storage/failures.py translates into 503) and invalidates a dead connection.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

Processor = Callable[[Any], Any] | None


@dataclass
class _Compiled:
    sql: str
    positional: tuple[str, ...] | None  # parameter order for positional paramstyles (SQLite's "?")
    binds: Mapping[str, Processor]
    # A column's processor may depend on the type the driver reports (cursor.description), as in
    # SQLAlchemy itself: made at the first execution.
    results: tuple[Processor, ...] | None = None


class DirectRead:
    def __init__(self, statement: sa.Select[Any]) -> None:
        self._statement = statement
        self._columns = list(statement.selected_columns)
        self._row = namedtuple("Row", [c.key for c in self._columns])  # type: ignore[misc]
        self._compiled: dict[str, _Compiled] = {}

    def first(self, connection: Connection, params: dict[str, Any]) -> Any | None:
        """The first row (attribute access by column key), or None."""
        dialect = connection.dialect
        compiled = self._compiled.get(dialect.name) or self._compile(dialect)
        bound = {name: (f(params[name]) if f else params[name]) for name, f in compiled.binds.items()}
        arguments: Any = tuple(bound[n] for n in compiled.positional) if compiled.positional else bound
        # The DBAPI connection this Connection holds (checked out of the pool with it).
        cursor = connection.connection.cursor()
        try:
            # The event a Core execution fires (it counts statements: server/metrics.py).
            events = connection.dispatch
            events.before_cursor_execute(connection, cursor, compiled.sql, arguments, None, False)
            cursor.execute(compiled.sql, arguments)
            raw = cursor.fetchone()
            if compiled.results is None:
                compiled.results = self._result_processors(dialect, cursor.description)
        except dialect.loaded_dbapi.Error:
            cursor.close()
            return connection.execute(self._statement, params).first()
        cursor.close()
        if raw is None:
            return None
        return self._row(*(f(v) if f else v for f, v in zip(compiled.results, raw, strict=True)))

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._statement.compile(dialect=dialect)
        binds = {
            name: b.type.dialect_impl(dialect).bind_processor(dialect) for name, b in compiled.binds.items()
        }
        positional = tuple(compiled.positiontup or ()) if compiled.positional else None
        self._compiled[dialect.name] = _Compiled(compiled.string, positional, binds)
        return self._compiled[dialect.name]

    def _result_processors(self, dialect: Dialect, description: Any) -> tuple[Processor, ...]:
        return tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, described[1])
            for column, described in zip(self._columns, description, strict=True)
        )
