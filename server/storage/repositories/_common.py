"""Helpers shared by the repositories."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from server.domain.errors import InvalidArgument
from server.domain.paging import PageAfter, parse_sort_value


def canonical_uuid(value: object) -> str | None:
    """The domain's lower-case uuid text, or None. Ids that are not uuids cannot exist, and the
    uuid column would refuse them with a driver error (PostgreSQL), so callers skip them."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def canonical_uuids(values: Iterable[object]) -> list[str]:
    return list(dict.fromkeys(u for u in map(canonical_uuid, values) if u is not None))


def of_tenant(column: sa.ColumnElement[Any], tenant_id: Any) -> sa.ColumnElement[bool]:
    """`column = tenant_id` for a statement that finds its rows through an index that does not start
    with the tenant (the primary key; deliveries' key): the tenant is checked on each row found and is
    never a way to find rows.

    Written as `coalesce(column, '') = :tenant_id` (the same test: tenant columns are NOT NULL),
    which neither database can serve from an index. With a plain `=` beside the ids, PostgreSQL
    looks the rows up through any index that starts with the tenant whenever it believes the tenant
    has about one row (a table not yet analyzed: a new database, or one that grew faster than
    autovacuum analyzes it; or a tenant newer than the statistics), then walks every row of the
    tenant and filters by id: 0.2 ms per exception updated at 1,200 rows, growing with the tenant
    (docs/benchmarks.md "Lookups by primary key"). SQLite, without ANALYZE, does the same for a list
    of ids.
    """
    return sa.func.coalesce(column, sa.literal_column("''")) == tenant_id


def keyset_after(
    column: sa.ColumnElement[Any],
    id_column: sa.ColumnElement[Any],
    sort_by: str,
    after: PageAfter,
    descending: bool,
) -> sa.ColumnElement[bool]:
    """Rows strictly after the cursor row in (sort value, id) order.

    A row-value comparison `(col, id) < (:v, :id)` is a single index range seek on both SQLite
    (3.15+) and PostgreSQL when the index is (tenant_id, [equality filters,] col, id); the expanded
    OR form makes PostgreSQL scan from the start of the tenant and filter (checked with EXPLAIN).
    """
    row_id = canonical_uuid(after.id)
    if row_id is None:
        raise InvalidArgument.field("cursor", "is not a cursor of this query")
    if column is id_column:
        bound_id = sa.literal(row_id, id_column.type)
        return id_column < bound_id if descending else id_column > bound_id
    value = parse_sort_value(after.value, sort_by)
    left = sa.tuple_(column, id_column)
    right = sa.tuple_(sa.literal(value, column.type), sa.literal(row_id, id_column.type))
    return left < right if descending else left > right
