"""Column types that behave the same on SQLite and PostgreSQL.

SQLite has no timestamp-with-time-zone and no exact decimal, so the two types here hide that:
every datetime comes back timezone-aware UTC, every amount comes back an exact Decimal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

_SCALE = Decimal("0.0001")


class UtcDateTime(TypeDecorator[datetime]):
    """TIMESTAMPTZ on PostgreSQL; on SQLite, UTC wall-clock text with microseconds.

    SQLAlchemy's SQLite DATETIME silently drops the offset without converting, so values are
    normalised to UTC before binding; SQLite's fixed-width text then sorts chronologically, which
    keyset pagination and the created_at indexes rely on. A naive datetime is taken to be UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """NUMERIC(22, 4) on PostgreSQL; text on SQLite.

    SQLite's NUMERIC affinity keeps only ~15 significant digits (it converts to REAL), and the API
    allows 18 integer digits plus 4 decimals, so SQLite stores the exact decimal string instead.
    Values are quantised to 4 places on both databases, so both return e.g. Decimal('1250.1000').
    Amounts are never compared or sorted in SQL, so text storage costs nothing there.
    """

    impl = sa.Numeric(22, 4)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(32))
        return dialect.type_descriptor(sa.Numeric(22, 4, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = Decimal(value).quantize(_SCALE)
        return format(value, "f") if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value).quantize(_SCALE)
