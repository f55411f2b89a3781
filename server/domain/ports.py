"""What services need from storage, as plain protocols (storage/ implements them)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol, Self

from server.domain.dispatch import DispatchRecord
from server.domain.exceptions import ReconException
from server.domain.history import HistoryEntry
from server.domain.paging import ExceptionQuery, PageAfter


class ExceptionRepository(Protocol):
    def add_many(self, items: list[ReconException]) -> None: ...

    def get(self, tenant_id: str, exception_id: str) -> ReconException | None: ...

    def get_many(self, tenant_id: str, ids: Iterable[str]) -> dict[str, ReconException]:
        """One query for a whole batch; missing (or other tenants') ids are absent."""
        ...

    def update_many(self, items: list[ReconException]) -> None: ...

    def list(self, tenant_id: str, query: ExceptionQuery) -> list[ReconException]:
        """Up to query.limit + 1 rows, so the caller can tell whether another page exists."""
        ...


class HistoryRepository(Protocol):
    def add_many(self, entries: list[HistoryEntry]) -> None: ...

    def list(
        self, tenant_id: str, exception_id: str, after: PageAfter | None, limit: int
    ) -> list[HistoryEntry]:
        """Oldest first, up to limit + 1."""
        ...


class DispatchRepository(Protocol):
    def get_many(self, tenant_id: str, keys: Iterable[str]) -> dict[str, DispatchRecord]: ...

    def add_many(self, records: list[DispatchRecord]) -> None: ...


class TokenRecord(Protocol):
    id: str
    tenant_id: str
    scopes: frozenset[str]
    revoked_at: datetime | None


class TokenRepository(Protocol):
    def add(
        self, token_id: str, tenant_id: str, name: str, scopes: frozenset[str], token_hash: str
    ) -> None: ...

    def find_by_hash(self, token_hash: str) -> TokenRecord | None: ...

    def revoke(self, token_id: str, now: datetime) -> bool: ...

    def count(self) -> int: ...


class UnitOfWork(Protocol):
    """One database transaction. Commits when the block ends normally, rolls back otherwise."""

    exceptions: ExceptionRepository
    history: HistoryRepository
    dispatches: DispatchRepository
    tokens: TokenRepository

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, write: bool) -> UnitOfWork:
        """write=False for read-only work (no write lock on SQLite)."""
        ...
