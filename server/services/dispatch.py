"""Dispatching exceptions to target systems, one at a time or up to 100 at once.

External calls are recorded before and after (docs/targets.md, "No duplicate tickets"):
1. read the exceptions, the tenant's target configuration and earlier dispatch records;
2. claim a pending record per item (deterministic key) and COMMIT it, on its own;
3. call the target holding no transaction: a bounded pool of batches, results in request order;
4. give up the claims of failed items, on their own: forget them when nothing was created, keep
   them unclaimed ("outcome unknown") when the target may have created a ticket;
5. complete the succeeded items (record, exception, DISPATCH history) in the call's transaction,
   so they commit together with the idempotency interceptor's stored response.
MANUAL, which calls nothing outside the process, skips steps 2 and 4: read, create and record all
happen in the call's one transaction.
A retry that finds a pending record whose attempt ended (released, or its claim too old: a crash)
asks the target for the ticket before creating one, and adopts it.

When the call's outer transaction is already open (say, a /v1/bulk sub-request after a write),
committing on the side could wait forever for that very transaction (SQLite's single writer), and
could not see what it wrote. Then everything stays inside it, and because a crash would roll the
claims back, every item asks the target first.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from server.domain.auth import Principal
from server.domain.bulk import BulkOutcome, unique_ids
from server.domain.dispatch import (
    Connector,
    DispatchRecord,
    TargetDown,
    TargetSystem,
    TicketRef,
    TicketRequest,
    apply_ticket,
    dispatch_key,
    external_marker,
    in_progress,
    maybe_created,
    parse_target_request,
)
from server.domain.errors import DomainError, FailedPrecondition, NotFound
from server.domain.exceptions import ReconException, Status, parse_uuid
from server.domain.history import Action, HistoryEntry
from server.domain.ports import ConnectorFactory, UnitOfWork, UnitOfWorkFactory
from server.domain.targets import TargetConfig
from server.services.clock import Clock, utc_now

log = logging.getLogger("reconrouter.dispatch")

Result = DispatchRecord | DomainError


class TargetConfigs(Protocol):
    """What dispatch needs from the target service (services/targets.py implements it)."""

    def config_for(self, uow: UnitOfWork, tenant_id: str, target: TargetSystem) -> TargetConfig | None: ...


@dataclass(frozen=True)
class _Item:
    exception: ReconException
    key: str


class DispatchService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        targets: TargetConfigs,
        connectors: ConnectorFactory,
        *,
        clock: Clock = utc_now,
        pool_size: int = 8,
        claim_timeout: timedelta = timedelta(minutes=5),
        observe: Callable[[str, str], None] | None = None,
    ) -> None:
        # (target, outcome) per dispatched item, outcome "succeeded" or the failure's reason: metrics.
        self._observe = observe
        self._uow = uow
        self._targets = targets
        self._connectors = connectors
        self._clock = clock
        self._pool_size = pool_size
        self._claim_timeout = claim_timeout

    def dispatch(
        self, principal: Principal, exception_id: str, target_system: str, queue: str
    ) -> DispatchRecord:
        """Single dispatch: per-item problems are errors of the whole call."""
        exception_id = parse_uuid(exception_id, "exception_id")
        target, queue = parse_target_request(target_system, queue)
        result = self._observed(target, self._run(principal, [exception_id], target, queue))[exception_id]
        if isinstance(result, DomainError):
            raise result
        return result

    def bulk_dispatch(
        self, principal: Principal, raw_ids: list[str], target_system: str, queue: str
    ) -> BulkOutcome:
        target, queue = parse_target_request(target_system, queue)
        ids = unique_ids(raw_ids)
        outcome = BulkOutcome(ids)
        for eid, result in self._observed(target, self._run(principal, ids, target, queue)).items():
            if isinstance(result, DomainError):
                outcome.fail(eid, result)
            else:
                outcome.succeeded.append(eid)
        return outcome.in_request_order()

    def _observed(self, target: TargetSystem, results: dict[str, Result]) -> dict[str, Result]:
        if self._observe is not None:
            for result in results.values():
                self._observe(target.value, result.reason if isinstance(result, DomainError) else "succeeded")
        return results

    # -- the steps -------------------------------------------------------------------------------

    def _run(
        self, principal: Principal, ids: list[str], target: TargetSystem, queue: str
    ) -> dict[str, Result]:
        keys = {eid: dispatch_key(target, eid, queue) for eid in ids}
        if self._connectors.is_local(target):
            return self._dispatch_local(principal, ids, keys, target, queue)
        tenant = principal.tenant_id
        inside = self._uow.in_transaction()
        with self._uow(write=False, join=inside) as uow:
            # Request-level refusal (422 TARGET_NOT_CONFIGURED) before any item is touched.
            connector = self._connectors.build(target, self._targets.config_for(uow, tenant, target))
            found = uow.exceptions.get_many(tenant, ids)
            earlier = uow.dispatches.get_many(tenant, keys.values())
        results, todo = _triage(ids, keys, found, earlier)
        if todo:
            results.update(self._dispatch_external(principal, target, queue, connector, todo, inside))
        return results

    def _dispatch_local(
        self, principal: Principal, ids: list[str], keys: dict[str, str], target: TargetSystem, queue: str
    ) -> dict[str, Result]:
        """Nothing leaves the process (MANUAL): no pending record, and the whole dispatch is one write
        transaction (the call's, under an idempotency key): two reads that lock the rows, then three
        batched writes, however many items (docs/benchmarks.md)."""
        tenant = principal.tenant_id
        with self._uow(write=True) as uow:
            connector = self._connectors.build(target, self._targets.config_for(uow, tenant, target))
            found = uow.exceptions.get_many(tenant, ids)
            earlier = uow.dispatches.get_many(tenant, keys.values())
            results, todo = _triage(ids, keys, found, earlier)
            if not todo:
                return results
            refs = connector.send([TicketRequest(i.exception, queue, i.key, i.key) for i in todo])
            now = self._clock()
            records: list[DispatchRecord] = []
            changed: list[ReconException] = []
            for item, ref in zip(todo, refs, strict=True):
                if isinstance(ref, DomainError):
                    results[item.exception.id] = ref
                    continue
                record = _completed(item, tenant, target, queue, ref, now)
                records.append(record)
                changed.append(item.exception)
                results[item.exception.id] = record
            uow.dispatches.add_many(records)
            self._record_tickets(uow, principal, target, queue, changed, records, now)
        return results

    def _record_tickets(
        self,
        uow: UnitOfWork,
        principal: Principal,
        target: TargetSystem,
        queue: str,
        exceptions: list[ReconException],
        records: list[DispatchRecord],
        now: datetime,
    ) -> None:
        """Each exception carries its ticket, with a DISPATCH history entry."""
        updated: list[ReconException] = []
        history: list[HistoryEntry] = []
        for exception, record in zip(exceptions, records, strict=True):
            reference = record.external_reference or ""
            updated.append(apply_ticket(exception, target, reference, now))
            changes = {"target_system": target.value, "queue": queue, "external_reference": reference}
            history.append(
                HistoryEntry.record(
                    principal.tenant_id, exception.id, Action.DISPATCH, principal.token_id, now, changes
                )
            )
        uow.exceptions.update_many(updated)
        uow.history.add_many(history)

    def _dispatch_external(
        self,
        principal: Principal,
        target: TargetSystem,
        queue: str,
        connector: Connector,
        items: list[_Item],
        inside: bool,
    ) -> dict[str, Result]:
        tenant = principal.tenant_id
        claim_id = str(uuid.uuid4())
        now = self._clock()
        pending = [
            DispatchRecord(i.key, tenant, i.exception.id, target, queue, created_at=now) for i in items
        ]
        with self._uow(write=True, join=inside) as uow:  # committed before any call when not inside
            claimed = uow.dispatches.claim(pending, claim_id, now, now - self._claim_timeout)
        results: dict[str, Result] = {}
        requests: list[TicketRequest] = []
        for item in items:
            row = claimed[item.key]
            if row.completed:
                results[item.exception.id] = row  # another call finished it meanwhile
            elif row.claim_id != claim_id:
                left = self._claim_timeout - (now - (row.claimed_at or now))
                results[item.exception.id] = in_progress(target, int(left.total_seconds()) + 1)
            else:
                requests.append(
                    TicketRequest(
                        item.exception,
                        queue,
                        item.key,
                        external_marker(target, item.exception.id, queue),
                        # An earlier attempt may have created it; inside a caller's transaction the
                        # claim itself would vanish in a crash, so ask every time.
                        check_existing=inside or row.attempts > 1,
                    )
                )
        created: list[tuple[_Item, TicketRef]] = []
        forget: list[str] = []
        unknown: list[str] = []
        for request, outcome in zip(requests, self._send(connector, requests), strict=True):
            if isinstance(outcome, DomainError):
                results[request.exception.id] = outcome
                (unknown if maybe_created(outcome) else forget).append(request.key)
            else:
                created.append((_Item(request.exception, request.key), outcome))
        if forget or unknown:
            with self._uow(write=True, join=inside) as uow:
                uow.dispatches.release(tenant, claim_id, forget, forget=True)
                uow.dispatches.release(tenant, claim_id, unknown, forget=False)
        if created:
            refs = [ref for _, ref in created]
            results.update(self._complete(principal, target, queue, claim_id, [i for i, _ in created], refs))
        return results

    def _send(self, connector: Connector, requests: list[TicketRequest]) -> list[TicketRef | DomainError]:
        """Batches of connector.batch_size through a bounded pool; results in request order."""
        size = max(1, connector.batch_size)
        batches = [requests[i : i + size] for i in range(0, len(requests), size)]
        workers = min(self._pool_size, len(batches))
        if workers <= 1:
            outcomes = [self._send_batch(connector, b) for b in batches]
        else:
            # Each task runs in a copy of this call's context, so its log lines carry the request id.
            contexts = [contextvars.copy_context() for _ in batches]
            with ThreadPoolExecutor(workers, thread_name_prefix="dispatch") as pool:
                outcomes = list(
                    pool.map(
                        lambda cb: cb[0].run(self._send_batch, connector, cb[1]),
                        zip(contexts, batches, strict=True),
                    )
                )
        return [outcome for batch in outcomes for outcome in batch]

    @staticmethod
    def _send_batch(connector: Connector, batch: list[TicketRequest]) -> list[TicketRef | DomainError]:
        try:
            outcomes = connector.send(batch)
        except Exception:
            # A bug, not the target: keep the claims as "outcome unknown" so a retry asks first.
            log.exception("connector failed", extra={"target": connector.target.value})
            outcomes = [
                TargetDown(f"{connector.target.value} dispatch failed unexpectedly", maybe_created=True)
            ] * len(batch)
        if len(outcomes) != len(batch):
            raise RuntimeError("a connector must answer once per request")
        return outcomes

    def _complete(
        self,
        principal: Principal,
        target: TargetSystem,
        queue: str,
        claim_id: str,
        items: list[_Item],
        refs: list[TicketRef],
    ) -> dict[str, Result]:
        """Records the tickets in the call's transaction: dispatch record, exception, history. The
        claims were committed on their own, so the records and exceptions are read again, locked:
        another call may have completed a record meanwhile (its record and history then stand)."""
        tenant = principal.tenant_id
        now = self._clock()
        outcomes = [
            _completed(item, tenant, target, queue, ref, now) for item, ref in zip(items, refs, strict=True)
        ]
        results: dict[str, Result] = {}
        with self._uow(write=True) as uow:
            uow.dispatches.complete(tenant, claim_id, outcomes)
            rows = uow.dispatches.get_many(tenant, [o.key for o in outcomes])
            current = uow.exceptions.get_many(tenant, [o.exception_id for o in outcomes])
            mine: list[tuple[ReconException, DispatchRecord]] = []
            for outcome in outcomes:
                row = rows.get(outcome.key)
                exception = current.get(outcome.exception_id)
                if row is None or not row.completed or exception is None:
                    results[outcome.exception_id] = TargetDown(
                        f"{target.value} dispatch could not be recorded", maybe_created=True
                    )
                    continue
                results[outcome.exception_id] = row
                if row.completed_at == now and row.external_reference == outcome.external_reference:
                    mine.append((exception, row))
            self._record_tickets(
                uow, principal, target, queue, [e for e, _ in mine], [r for _, r in mine], now
            )
        return results


def _triage(
    ids: list[str], keys: dict[str, str], found: dict[str, ReconException], earlier: dict[str, DispatchRecord]
) -> tuple[dict[str, Result], list[_Item]]:
    """Items answered without a call (not found, already dispatched, resolved), and those to send."""
    results: dict[str, Result] = {}
    todo: list[_Item] = []
    for eid in ids:
        exception, previous = found.get(eid), earlier.get(keys[eid])
        if exception is None:
            results[eid] = NotFound("exception not found")
        elif previous is not None and previous.completed:
            results[eid] = previous  # already dispatched here: the same ticket, never a second one
        elif exception.status is Status.RESOLVED:
            results[eid] = FailedPrecondition("exception is resolved", reason="INVALID_STATE")
        else:
            todo.append(_Item(exception, keys[eid]))
    return results, todo


def _completed(
    item: _Item, tenant: str, target: TargetSystem, queue: str, ref: TicketRef, now: datetime
) -> DispatchRecord:
    return DispatchRecord(
        item.key,
        tenant,
        item.exception.id,
        target,
        queue,
        created_at=now,
        external_reference=ref.external_reference,
        acknowledged=ref.acknowledged,
        completed_at=now,
    )
