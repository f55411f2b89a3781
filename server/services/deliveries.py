"""Deliveries as users see them (API.md §7): the log of every attempt, retry, cancel, and what the
workers record after an attempt.

A delivered attempt completes the dispatch exactly as an immediate success would have: the
exception carries its ticket (external_system, external_issue_id) and gets a DISPATCH history entry
naming who dispatched it, in the same transaction that marks the delivery DELIVERED.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from server.domain.auth import Principal
from server.domain.bulk import BulkOutcome, unique_ids
from server.domain.delivery import Attempt, Delivery, DeliveryState, ticket_recorded
from server.domain.dispatch import parse_target_system
from server.domain.errors import DomainError, NotFound, Violations
from server.domain.exceptions import parse_uuid
from server.domain.paging import (
    DEFAULT_LIMIT,
    PageAfter,
    decode_cursor,
    encode_cursor,
    parse_limit,
    sort_value,
)
from server.domain.ports import UnitOfWork, UnitOfWorkFactory
from server.services.clock import Clock, utc_now


@dataclass(frozen=True)
class DeliveryPage:
    items: list[Delivery]
    next_cursor: str
    limit: int
    has_more: bool


class DeliveryService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock = utc_now,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        # Tells this process's workers that something is due now (retry).
        self.wake = wake
        # Notified whenever a delivery's outcome is recorded here: dispatch calls waiting for first
        # outcomes listen (other replicas' outcomes are seen by polling).
        self.recorded = threading.Condition()

    # -- reads ---------------------------------------------------------------------------------

    def for_exception(self, principal: Principal, exception_id: str) -> list[Delivery]:
        eid = parse_uuid(exception_id, "exception_id")
        with self._uow(write=False) as uow:
            if uow.exceptions.get(principal.tenant_id, eid) is None:
                raise NotFound("exception not found")
            return uow.deliveries.for_exception(principal.tenant_id, eid)

    def get(self, principal: Principal, delivery_id: str) -> Delivery:
        did = parse_uuid(delivery_id, "delivery_id")
        with self._uow(write=False) as uow:
            found = uow.deliveries.get(principal.tenant_id, did)
        if found is None:
            raise NotFound("delivery not found")
        return found

    def page(
        self, principal: Principal, state: str, target_system: str, cursor: str, limit: int
    ) -> DeliveryPage:
        v = Violations()
        size = parse_limit(limit, v)
        wanted_state = None
        if state.strip():
            try:
                wanted_state = DeliveryState(state.strip().upper())
            except ValueError:
                v.add("state", f"must be one of {', '.join(s.value for s in DeliveryState)}")
        v.raise_if_any()
        target = parse_target_system(target_system) if target_system.strip() else None
        scope = f"deliveries:{wanted_state or ''}:{target or ''}"
        after = decode_cursor(cursor, scope)
        with self._uow(write=False) as uow:
            rows = uow.deliveries.page(
                principal.tenant_id, state=wanted_state, target=target, after=after, limit=size
            )
        has_more = len(rows) > size
        items = rows[:size]
        next_cursor = ""
        if has_more:
            last = items[-1]
            next_cursor = encode_cursor(scope, PageAfter(sort_value(last, "created_at"), last.id))
        return DeliveryPage(items, next_cursor, size or DEFAULT_LIMIT, has_more)

    def latest(self, tenant_id: str, ids: list[str]) -> dict[str, Delivery]:
        """The deliveries as they are now (a dispatch call waiting for first outcomes polls this)."""
        with self._uow(write=False, join=False) as uow:
            return uow.deliveries.get_many(tenant_id, ids)

    # -- changes by people -----------------------------------------------------------------------

    def retry(self, principal: Principal, delivery_id: str) -> Delivery:
        retried = self._change(principal, delivery_id, Delivery.retried)
        self.wake()
        return retried

    def bulk_retry(self, principal: Principal, raw_ids: list[str]) -> BulkOutcome:
        ids = unique_ids(raw_ids, "delivery_ids")
        outcome = BulkOutcome(ids)
        now = self._clock()
        with self._uow(write=True) as uow:
            found = uow.deliveries.get_many(principal.tenant_id, ids)
            changed: list[Delivery] = []
            for did in ids:
                delivery = found.get(did)
                if delivery is None:
                    outcome.fail(did, NotFound("delivery not found"))
                    continue
                try:
                    changed.append(delivery.retried(now))
                except DomainError as exc:  # INVALID_STATE: delivered, pending or in flight
                    outcome.fail(did, exc)
                    continue
                outcome.succeeded.append(did)
            uow.deliveries.update_many(changed)
        if outcome.succeeded:
            self.wake()
        return outcome.in_request_order()

    def cancel(self, principal: Principal, delivery_id: str) -> Delivery:
        return self._change(principal, delivery_id, Delivery.cancelled)

    def _change(
        self, principal: Principal, delivery_id: str, change: Callable[[Delivery, datetime], Delivery]
    ) -> Delivery:
        """One delivery, locked, changed by `change` (which refuses states it does not take)."""
        did = parse_uuid(delivery_id, "delivery_id")
        with self._uow(write=True) as uow:
            found = uow.deliveries.get_many(principal.tenant_id, [did]).get(did)
            if found is None:
                raise NotFound("delivery not found")
            changed = change(found, self._clock())
            uow.deliveries.update_many([changed])
        return changed

    # -- the workers' side -----------------------------------------------------------------------

    def record(self, owner: str, delivery: Delivery, attempt: Attempt) -> bool:
        """An attempt's outcome, with the ticket on the exception when it was delivered; False when
        `owner` no longer holds the lease (nothing is written then)."""
        with self._uow(write=True, join=False) as uow:
            if not uow.deliveries.finish(owner, delivery, attempt):
                return False
            if delivery.state is DeliveryState.DELIVERED and not delivery.is_resolution:
                self._record_ticket(uow, delivery)
        with self.recorded:
            self.recorded.notify_all()
        return True

    def _record_ticket(self, uow: UnitOfWork, delivery: Delivery) -> None:
        exception = uow.exceptions.get_many(delivery.tenant_id, [delivery.exception_id]).get(
            delivery.exception_id
        )
        if exception is None:
            return
        ticketed, entry = ticket_recorded(exception, delivery)
        uow.exceptions.update_many([ticketed])
        uow.history.add_many([entry])
