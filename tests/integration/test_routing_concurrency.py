"""Concurrent rule writes of one tenant on the real databases: of several creates with one priority
exactly one succeeds and the others are 422 DUPLICATE_PRIORITY (never a constraint error), and every
write moves the tenant's rules generation, so no process keeps using rules that changed."""

from __future__ import annotations

import threading
import uuid

from server.domain.auth import Principal
from server.domain.errors import DomainError
from server.domain.routing import RuleInput

WRITERS = 6


def test_concurrent_creates_with_one_priority_leave_one_rule(app):
    principal = Principal(f"tenant-{uuid.uuid4()}", "token-1", frozenset())
    barrier = threading.Barrier(WRITERS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def create(n: int) -> None:
        barrier.wait()
        try:
            app.routing.create(principal, RuleInput(f"r{n}", 5, sources=(f"s{n}",), target_system="MANUAL"))
            outcome = "created"
        except DomainError as exc:
            outcome = exc.reason
        except Exception as exc:  # a constraint error would land here
            outcome = type(exc).__name__
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["DUPLICATE_PRIORITY"] * (WRITERS - 1) + ["created"]
    assert len(app.routing.list(principal)) == 1
    with app.uow(write=False) as uow:
        # Every attempt bumped the generation first; only the committed ones count.
        assert uow.routing.generation(principal.tenant_id) == 1
