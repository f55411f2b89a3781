"""What services need from storage, as plain protocols (storage/ implements them)."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from server.domain.delivery import Attempt, Delivery, DeliveryState
from server.domain.dispatch import Connector, TargetSystem
from server.domain.exceptions import ReconException
from server.domain.history import HistoryEntry
from server.domain.paging import ExceptionQuery, PageAfter
from server.domain.routing import RoutingRule
from server.domain.sla import SlaPolicy
from server.domain.targets import StoredTarget, TargetConfig


class ExceptionRepository(Protocol):
    def add_many(self, items: list[ReconException]) -> None: ...

    def get(self, tenant_id: str, exception_id: str) -> ReconException | None: ...

    def get_many(self, tenant_id: str, ids: Iterable[str]) -> dict[str, ReconException]:
        """One query for a whole batch; missing (or other tenants') ids are absent."""
        ...

    def update_many(self, items: list[ReconException]) -> None: ...

    def find_by_ticket(self, tenant_id: str, system: str, reference: str) -> list[ReconException]:
        """The tenant's exceptions whose external_system / external_issue_id are these, by id."""
        ...

    def list(self, tenant_id: str, query: ExceptionQuery) -> list[ReconException]:
        """Up to query.limit + 1 rows, so the caller can tell whether another page exists."""
        ...

    def overdue_unescalated(self, tenant_id: str, now: datetime, limit: int) -> builtins.list[ReconException]:
        """Up to `limit` unresolved, never escalated exceptions past due_at, most overdue first;
        locked in a write unit of work, skipping rows another transaction holds (PostgreSQL)."""
        ...

    def count_overdue_unescalated(self, tenant_id: str, now: datetime, cap: int) -> int:
        """How many exceptions overdue_unescalated would find, counting no further than `cap` (the
        escalation backlog metric: a walk of the partial index, bounded)."""
        ...


class HistoryRepository(Protocol):
    def add_many(self, entries: list[HistoryEntry]) -> None: ...

    def list(
        self, tenant_id: str, exception_id: str, after: PageAfter | None, limit: int
    ) -> list[HistoryEntry]:
        """Oldest first, up to limit + 1."""
        ...


class DeliveryRepository(Protocol):
    """Deliveries and their attempts (storage/repositories/deliveries.py says how claims work)."""

    def get_by_keys(self, tenant_id: str, keys: Iterable[str]) -> dict[str, Delivery]:
        """By dispatch key; locked in a write unit of work."""
        ...

    def get_many(
        self, tenant_id: str, ids: Iterable[str], *, with_attempts: bool = False
    ) -> dict[str, Delivery]:
        """By id; locked in a write unit of work. Missing (or other tenants') ids are absent."""
        ...

    def get(self, tenant_id: str, delivery_id: str) -> Delivery | None:
        """One delivery with its attempts."""
        ...

    def add_many(self, deliveries: list[Delivery]) -> None: ...

    def update_many(self, deliveries: list[Delivery]) -> None:
        """Writes each one's state (identity, key and creation never change)."""
        ...

    def add_attempts_many(self, entries: list[tuple[Delivery, Attempt]]) -> None: ...

    def for_exception(self, tenant_id: str, exception_id: str) -> list[Delivery]:
        """Oldest first, with attempts."""
        ...

    def for_exceptions(self, tenant_id: str, exception_ids: Iterable[str]) -> list[Delivery]:
        """Every delivery of these exceptions (without their attempts), oldest first."""
        ...

    def page(
        self,
        tenant_id: str,
        *,
        state: DeliveryState | None,
        target: TargetSystem | None,
        after: PageAfter | None,
        limit: int,
    ) -> list[Delivery]:
        """Newest first, up to limit + 1, with attempts."""
        ...

    def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        accept: Callable[[Delivery], bool],
    ) -> list[Delivery]:
        """Up to `limit` due deliveries that `accept` takes, leased to owner, one more attempt each."""
        ...

    def finish(self, owner: str, delivery: Delivery, attempt: Attempt) -> bool:
        """Records an attempt's outcome if owner still holds the lease."""
        ...

    def any_due(self, now: datetime) -> bool:
        """Whether anything may be claimable now (a read before taking a write lock)."""
        ...

    def counts_by_state(self) -> dict[str, int]: ...

    def oldest_due(self, now: datetime) -> datetime | None: ...


class TargetRepository(Protocol):
    def get(self, tenant_id: str, target: TargetSystem) -> StoredTarget | None: ...

    def list(self, tenant_id: str) -> list[StoredTarget]: ...

    def put(self, stored: StoredTarget) -> None:
        """Creates or replaces settings and secrets; `paused` is left as it is."""
        ...

    def set_paused(self, tenant_id: str, target: TargetSystem, paused: bool) -> bool: ...

    def delete(self, tenant_id: str, target: TargetSystem) -> bool: ...

    def by_hook_id(self, hook_id: str) -> StoredTarget | None:
        """The configuration (of any tenant) whose inbound path holds this hook id."""
        ...

    def record_inbound_event(
        self, tenant_id: str, target: TargetSystem, event_id: str, now: datetime
    ) -> bool:
        """Notes that an inbound hook event was applied; False when it already was (a repeat).
        Events older than a week are forgotten on the way."""
        ...


class RoutingRuleRepository(Protocol):
    """Routing rules per tenant, and the tenant's rules generation: every write bumps it in the same
    transaction, so a process's cache of the rules knows with one primary-key read whether it is
    stale (services/routing.py)."""

    def list(self, tenant_id: str) -> list[RoutingRule]:
        """Priority order, lowest first."""
        ...

    def get(self, tenant_id: str, rule_id: str) -> RoutingRule | None: ...

    def add(self, rule: RoutingRule) -> None: ...

    def replace(self, rule: RoutingRule) -> bool:
        """False when the rule does not exist (for this tenant)."""
        ...

    def delete(self, tenant_id: str, rule_id: str) -> bool: ...

    def generation(self, tenant_id: str) -> int:
        """0 until the tenant's rules first change."""
        ...

    def bump_generation(self, tenant_id: str) -> None: ...


class SlaPolicyRepository(Protocol):
    def get(self, tenant_id: str) -> SlaPolicy | None:
        """None: the tenant uses the defaults."""
        ...

    def put(self, policy: SlaPolicy) -> None: ...

    def with_escalation(self) -> list[SlaPolicy]:
        """Every tenant's policy that has an escalation target (the escalation scheduler's tenants)."""
        ...


class ConnectorFactory(Protocol):
    def is_local(self, target: TargetSystem) -> bool:
        """True when the target's connector never leaves the process (its `external` is False)."""
        ...

    def build(self, target: TargetSystem, config: TargetConfig | None) -> Connector:
        """The connector for a tenant's configuration of target (None: not configured), or
        FailedPrecondition TARGET_NOT_CONFIGURED. MANUAL needs no configuration."""
        ...


class TokenRecord(Protocol):
    # Read-only (properties): a frozen dataclass, say, satisfies them.
    @property
    def id(self) -> str: ...

    @property
    def tenant_id(self) -> str: ...

    @property
    def scopes(self) -> frozenset[str]: ...

    @property
    def revoked_at(self) -> datetime | None: ...


class TokenRepository(Protocol):
    def add(
        self, token_id: str, tenant_id: str, name: str, scopes: frozenset[str], token_hash: str
    ) -> None: ...

    def find_by_hash(self, token_hash: str) -> TokenRecord | None: ...

    def revoke(self, token_id: str, now: datetime) -> bool: ...

    def count(self) -> int: ...


class UnitOfWork(Protocol):
    """One database transaction. Commits when the block ends normally, rolls back otherwise."""

    # Read-only (properties), so an adapter may hold its own repository classes: a settable protocol
    # attribute would have to be exactly these protocol types.
    @property
    def exceptions(self) -> ExceptionRepository: ...

    @property
    def history(self) -> HistoryRepository: ...

    @property
    def deliveries(self) -> DeliveryRepository: ...

    @property
    def targets(self) -> TargetRepository: ...

    @property
    def tokens(self) -> TokenRepository: ...

    @property
    def routing(self) -> RoutingRuleRepository: ...

    @property
    def sla(self) -> SlaPolicyRepository: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, write: bool, join: bool = True) -> UnitOfWork:
        """write=False for read-only work (no write lock on SQLite). Joins the call's outer unit of
        work (one transaction per call) unless join=False: then it commits on its own."""
        ...

    def in_transaction(self) -> bool:
        """True when the call's outer unit of work has begun its transaction: it may hold locks (on
        SQLite the write lock), so work committed on its own now could wait for it forever."""
        ...
