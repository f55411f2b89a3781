"""Dispatching exceptions to target systems, one at a time or up to 100 at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.domain.auth import Principal
from server.domain.bulk import BulkOutcome, unique_ids
from server.domain.dispatch import (
    Connector,
    ConnectorResolver,
    DispatchRecord,
    TargetSystem,
    dispatch_key,
    parse_target_request,
)
from server.domain.errors import DomainError, NotFound
from server.domain.exceptions import ReconException, parse_uuid
from server.domain.history import Action, HistoryEntry
from server.domain.ports import UnitOfWorkFactory
from server.services.clock import Clock, utc_now


@dataclass
class _Batch:
    """What one dispatch transaction writes, collected so each table gets one batched statement."""

    records: list[DispatchRecord]
    exceptions: list[ReconException]
    history: list[HistoryEntry]


class DispatchService:
    def __init__(self, uow: UnitOfWorkFactory, connectors: ConnectorResolver, clock: Clock = utc_now) -> None:
        self._uow = uow
        self._connectors = connectors
        self._clock = clock

    def dispatch(
        self, principal: Principal, exception_id: str, target_system: str, queue: str
    ) -> DispatchRecord:
        """Single dispatch: per-item problems are errors of the whole call."""
        exception_id = parse_uuid(exception_id, "exception_id")
        target, queue = parse_target_request(target_system, queue)
        connector = self._connectors.resolve(principal.tenant_id, target)
        results = self._run(principal, [exception_id], target, queue, connector)
        result = results[exception_id]
        if isinstance(result, DomainError):
            raise result
        return result

    def bulk_dispatch(
        self, principal: Principal, raw_ids: list[str], target_system: str, queue: str
    ) -> BulkOutcome:
        target, queue = parse_target_request(target_system, queue)
        ids = unique_ids(raw_ids)
        # Request-level refusal (422 TARGET_NOT_CONFIGURED) before any item is touched.
        connector = self._connectors.resolve(principal.tenant_id, target)
        outcome = BulkOutcome(ids)
        for eid, result in self._run(principal, ids, target, queue, connector).items():
            if isinstance(result, DomainError):
                outcome.fail(eid, result)
            else:
                outcome.succeeded.append(eid)
        return outcome.in_request_order()

    def _run(
        self, principal: Principal, ids: list[str], target: TargetSystem, queue: str, connector: Connector
    ) -> dict[str, DispatchRecord | DomainError]:
        tenant = principal.tenant_id
        keys = {eid: dispatch_key(target, eid, queue) for eid in ids}
        results: dict[str, DispatchRecord | DomainError] = {}
        batch = _Batch([], [], [])
        with self._uow(write=True) as uow:
            found = uow.exceptions.get_many(tenant, ids)
            done = uow.dispatches.get_many(tenant, keys.values())
            now = self._clock()
            for eid in ids:
                try:
                    results[eid] = self._dispatch_one(
                        principal,
                        found.get(eid),
                        done.get(keys[eid]),
                        target,
                        queue,
                        keys[eid],
                        connector,
                        now,
                        batch,
                    )
                except DomainError as exc:
                    results[eid] = exc
            uow.dispatches.add_many(batch.records)
            uow.exceptions.update_many(batch.exceptions)
            uow.history.add_many(batch.history)
        return results

    @staticmethod
    def _dispatch_one(
        principal: Principal,
        exception: ReconException | None,
        previous: DispatchRecord | None,
        target: TargetSystem,
        queue: str,
        key: str,
        connector: Connector,
        now: datetime,
        batch: _Batch,
    ) -> DispatchRecord:
        if exception is None:
            raise NotFound("exception not found")
        if previous is not None and previous.completed:
            return previous  # already dispatched here: answer the same ticket, never a second one
        exception.mark_dispatched(target.value, "", now)  # refuses resolved exceptions
        ticket = connector.create(exception, queue, key)
        record = DispatchRecord(
            key=key,
            tenant_id=principal.tenant_id,
            exception_id=exception.id,
            target_system=target,
            queue=queue,
            created_at=now,
            external_reference=ticket.external_reference,
            acknowledged=ticket.acknowledged,
            completed_at=now,
        )
        batch.records.append(record)
        batch.exceptions.append(exception.mark_dispatched(target.value, ticket.external_reference, now))
        changes = {
            "target_system": target.value,
            "queue": queue,
            "external_reference": ticket.external_reference,
        }
        batch.history.append(
            HistoryEntry.record(
                principal.tenant_id, exception.id, Action.DISPATCH, principal.token_id, now, changes
            )
        )
        return record
