"""List queries and their opaque cursors (keyset pagination: a page never repeats or skips a row
that existed when the walk began, however many rows are added meanwhile)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from server.domain.errors import InvalidArgument, Violations
from server.domain.exceptions import Severity, Status

DEFAULT_LIMIT = 20
MAX_LIMIT = 200
SORT_FIELDS = ("created_at", "updated_at", "severity", "status", "id", "due_at")


@dataclass(frozen=True)
class ExceptionFilter:
    status: Status | None = None
    severity: Severity | None = None
    assigned_to: str | None = None
    external_system: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    # Unresolved and past due_at at the time of each page's query (API.md §8).
    overdue: bool = False

    def digest(self) -> str:
        """Ties a cursor to the filters it was made with."""
        raw = json.dumps(asdict(self), default=str, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PageAfter:
    """The last row of the previous page: its sort value and id."""

    value: str | int
    id: str


@dataclass(frozen=True)
class ExceptionQuery:
    filter: ExceptionFilter
    sort_by: str = "created_at"
    descending: bool = True
    limit: int = DEFAULT_LIMIT
    after: PageAfter | None = None
    # The time `overdue` compares due_at with (set when filter.overdue is).
    now: datetime | None = None


def parse_limit(limit: int, v: Violations) -> int:
    if limit < 0 or limit > MAX_LIMIT:
        v.add("limit", f"must be between 1 and {MAX_LIMIT}")
        return DEFAULT_LIMIT
    return limit or DEFAULT_LIMIT


def parse_sort(sort_by: str, sort_order: str, v: Violations) -> tuple[str, bool]:
    sort_by = sort_by.strip().lower() or "created_at"
    sort_order = sort_order.strip().lower() or "desc"
    if sort_by not in SORT_FIELDS:
        v.add("sort_by", f"must be one of {', '.join(SORT_FIELDS)}")
    if sort_order not in ("asc", "desc"):
        v.add("sort_order", "must be asc or desc")
    return sort_by, sort_order == "desc"


def encode_cursor(scope: str, after: PageAfter) -> str:
    raw = json.dumps({"s": scope, "v": after.value, "i": after.id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, scope: str) -> PageAfter | None:
    """`scope` names the sort and filters; a cursor from another query is refused, not misread."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        value, row_id = data["v"], data["i"]
        # bool is an int to Python; a cursor never holds one.
        if isinstance(value, bool) or not isinstance(value, str | int) or not isinstance(row_id, str):
            raise ValueError
        if data["s"] != scope:
            raise ValueError
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument.field("cursor", "is not a cursor of this query") from None
    return PageAfter(value, row_id)


def sort_value(item: object, sort_by: str) -> str | int:
    """The cursor value of a row for a sort field: ISO-8601 UTC text for times, ints for enums."""
    value = getattr(item, sort_by)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, int):  # Severity and Status are IntEnums
        return int(value)
    return str(value)


_ENUM_SORT_VALUES = {"severity": frozenset(map(int, Severity)), "status": frozenset(map(int, Status))}


def parse_sort_value(value: str | int, sort_by: str) -> datetime | str | int:
    """Inverse of sort_value, for storage to compare against. Only values sort_value can produce
    pass: a cursor is opaque to callers but not tamper-proof, and a value the database cannot bind
    (an integer beyond 64 bits, a time that overflows when moved to UTC) must be a 400, not a 500."""
    refused = InvalidArgument.field("cursor", "is not a cursor of this query")
    if sort_by in ("created_at", "updated_at", "due_at"):
        try:
            parsed = datetime.fromisoformat(str(value))
            if parsed.tzinfo is None:
                raise ValueError
            return parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            raise refused from None
    if sort_by in _ENUM_SORT_VALUES and (isinstance(value, bool) or value not in _ENUM_SORT_VALUES[sort_by]):
        raise refused
    return value
