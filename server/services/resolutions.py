"""Outbound status (API.md §9): a resolution recorded here becomes deliveries to the tickets its
exceptions were delivered to, in the resolving transaction itself, so that it is pushed exactly
once (its delivery key is unique) and survives any crash; the delivery workers carry it out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from server.domain.delivery import resolution_deliveries
from server.domain.exceptions import ReconException, Status
from server.domain.ports import UnitOfWork


def record_resolutions(
    uow: UnitOfWork,
    tenant_id: str,
    changed: Iterable[ReconException],
    origin: str | None,
    actor_id: str,
    now: datetime,
) -> int:
    """Deliveries for the exceptions among `changed` that are now RESOLVED; `origin` names the
    system the resolution came from (None: from here), which is not told again. How many."""
    resolved = [e for e in changed if e.status is Status.RESOLVED]
    if not resolved:
        return 0
    existing = uow.deliveries.for_exceptions(tenant_id, [e.id for e in resolved])
    made = [d for e in resolved for d in resolution_deliveries(e, existing, origin, actor_id, now)]
    uow.deliveries.add_many(made)
    return len(made)
