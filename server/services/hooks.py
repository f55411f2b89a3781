"""Inbound hooks (API.md §9; docs/integrations.md): a ticket system's own webhook post, found by the
hook id in its path, authenticated by its signature over the raw body, and applied once to the
exceptions dispatched to that ticket as a CALLBACK naming the system."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from server.domain.auth import Principal
from server.domain.dispatch import TargetSystem
from server.domain.errors import DomainError, PayloadTooLarge, Unauthenticated
from server.domain.exceptions import ReconException, Status
from server.domain.history import Action, HistoryEntry, change
from server.domain.hooks import HOOK_SYSTEMS, HookEvent, parse_event, verify_signature
from server.domain.ports import UnitOfWorkFactory
from server.services.clock import Clock, utc_now
from server.services.resolutions import record_resolutions
from server.services.targets import TargetService

APPLIED, UNCHANGED, DUPLICATE, IGNORED = "APPLIED", "UNCHANGED", "DUPLICATE", "IGNORED"
# Refusals, as the metrics name them (the caller sees 401, 413, 429 or 400; docs/integrations.md).
# RATE_LIMITED is counted by the RPC layer (the rate limit interceptor refuses it, not this service).
BAD_SIGNATURE, UNKNOWN_HOOK, SECRET_UNREADABLE = "BAD_SIGNATURE", "UNKNOWN_HOOK", "SECRET_UNREADABLE"
TOO_LARGE, RATE_LIMITED, INVALID = "TOO_LARGE", "RATE_LIMITED", "INVALID"
# (system, outcome) per post that reached the service: metrics.
HookObserver = Callable[[str, str], None]
HOOK_ACTOR_PREFIX = "hook:"


def hook_actor(system: TargetSystem) -> str:
    """The actor of what a hook changed: history names the system (`hook:JIRA`)."""
    return f"{HOOK_ACTOR_PREFIX}{system.value}"


@dataclass(frozen=True)
class Receipt:
    status: str
    exception_ids: tuple[str, ...] = ()


class HookService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        targets: TargetService,
        max_body_bytes: int,
        clock: Clock = utc_now,
        observe: HookObserver | None = None,
    ) -> None:
        self._uow = uow
        self._targets = targets
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        self._observe: HookObserver = observe or (lambda system, outcome: None)
        # Tells this process's delivery workers that a resolution recorded deliveries.
        self.deliveries_recorded: Callable[[], None] = lambda: None

    def authenticate(self, system: str, hook_id: str, body: bytes, signature: str | None) -> Principal:
        """The tenant whose hook this is, once the signature over the raw body holds (before
        anything reads the body). Unknown hooks and bad signatures are both 401: a caller learns
        nothing about which hook ids exist."""
        target = TargetSystem(system)
        if len(body) > self._max_body_bytes:
            self._observe(system, TOO_LARGE)
            limit = self._max_body_bytes
            raise PayloadTooLarge(f"the body is larger than HOOK_MAX_BODY_BYTES ({limit} bytes)")
        if target not in HOOK_SYSTEMS or not hook_id or len(hook_id) > 64:
            self._observe(system, UNKNOWN_HOOK)
            raise Unauthenticated("no such hook")
        try:
            with self._uow(write=False, join=False) as uow:
                config = self._targets.by_hook_id(uow, hook_id)
        except DomainError as exc:
            if exc.reason != "TARGET_SECRETS_UNREADABLE":
                raise
            self._observe(system, SECRET_UNREADABLE)
            raise Unauthenticated("this hook's secret cannot be read; configure the target again") from None
        if config is None or config.target is not target:
            self._observe(system, UNKNOWN_HOOK)
            raise Unauthenticated("no such hook")
        try:
            verify_signature(config.secret("inbound_secret"), body, signature)
        except Unauthenticated:
            self._observe(system, BAD_SIGNATURE)
            raise
        return Principal(config.tenant_id, hook_actor(target), frozenset())

    def receive(self, principal: Principal, system: str, body: bytes, headers: Mapping[str, str]) -> Receipt:
        """An authenticated post: parsed, de-duplicated by the system's event id, applied."""
        target = TargetSystem(system)
        try:
            event = parse_event(target, body, {k.lower(): v for k, v in headers.items()})
        except DomainError:
            self._observe(system, INVALID)
            raise
        receipt = self._apply_event(principal, target, event)
        self._observe(system, receipt.status)
        return receipt

    def _apply_event(self, principal: Principal, target: TargetSystem, event: HookEvent) -> Receipt:
        now = self._clock()
        with self._uow(write=True) as uow:
            linked = uow.exceptions.find_by_ticket(principal.tenant_id, target.value, event.ticket)
            if not linked:
                return Receipt(IGNORED)  # never dispatched there by this tenant: nothing to do
            if not uow.targets.record_inbound_event(principal.tenant_id, target, event.event_id, now):
                return Receipt(DUPLICATE, tuple(e.id for e in linked))
            changed: list[ReconException] = []
            entries: list[HistoryEntry] = []
            for current in linked:
                new = _apply(current, event, now)
                if new is None:
                    continue
                changes: dict[str, object] = {
                    "status": change(current.status.name, new.status.name),
                    "external_system": target.value,
                    "external_issue_id": event.ticket,
                    "event_id": event.event_id,
                }
                if new.assigned_to != current.assigned_to:
                    changes["assigned_to"] = change(current.assigned_to, new.assigned_to)
                if new.resolution_notes != current.resolution_notes:
                    changes["resolution_notes"] = new.resolution_notes
                changed.append(new)
                entries.append(
                    HistoryEntry.record(
                        principal.tenant_id, current.id, Action.CALLBACK, principal.token_id, now, changes
                    )
                )
            uow.exceptions.update_many(changed)
            uow.history.add_many(entries)
            # Other tickets of a resolved exception hear of it; the system it came from does not.
            tenant, actor = principal.tenant_id, principal.token_id
            recorded = record_resolutions(uow, tenant, changed, target.value, actor, now)
        if recorded:
            self.deliveries_recorded()
        return Receipt(APPLIED if changed else UNCHANGED, tuple(e.id for e in changed))


def _apply(current: ReconException, event: HookEvent, now: datetime) -> ReconException | None:
    """The exception after the event, or None when nothing changes (resolved is final)."""
    if current.status is Status.RESOLVED or event.status is None:
        return None
    if event.status is Status.RESOLVED:
        return current.resolve(event.notes, f"resolved in {event.system.value}", now)
    if current.status is Status.ASSIGNED and current.assigned_to == event.assignee:
        return None
    return current.assign(event.assignee, now)
