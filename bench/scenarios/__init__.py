"""The scenario list of issue 7, in order. Each module's run(bench) measures through bench.harness.

    1 ceilings      no-op RPC (HealthService/Live, GET /livez) over gRPC and REST
    2 reads         GetException, ListExceptions over gRPC and REST
    3 dispatch      100-item bulk dispatch to MANUAL (first dispatch, re-dispatch) over gRPC and
                    REST; to the webhook stand-in (first dispatch, REST); to slow webhook and JIRA
                    stand-ins, DELIVERY_MAX_PER_HOST 1 vs 8
    4 idempotency   keyed first execution vs replay (100-item dispatch, CreateException); the
                    interceptor's cost on a call without a key
    5 bulk          POST /v1/bulk with 50 GETs vs the same 50 GETs one by one
    6 scale         get and list p50/p99 at 10k, 100k (and 1M in `make bench`) exceptions in a tenant
    7 workers       WORKERS=1 vs 2; 1 vs 2 replicas behind Envoy (PostgreSQL only)
    8 delivery      durable delivery: a queue of webhook deliveries drained after a pause, its server
                    CPU per delivery; MANUAL dispatch with and without other tenants' deliveries
                    trickling
    9 routing       100-item bulk dispatch routed by rules vs with an explicit target; the overdue
                    list at 10k and 1M exceptions

A scenario whose route is not served yet records a TODO (bench.todo) instead of a number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.harness import Bench
from bench.scenarios import bulk, ceilings, delivery, dispatch, idempotency, reads, routing, scale, workers


@dataclass(frozen=True)
class Scenario:
    number: int
    name: str
    run: Callable[[Bench], None]


SCENARIOS = (
    Scenario(1, "ceilings", ceilings.run),
    Scenario(2, "reads", reads.run),
    Scenario(3, "dispatch", dispatch.run),
    Scenario(4, "idempotency", idempotency.run),
    Scenario(5, "bulk", bulk.run),
    Scenario(6, "scale", scale.run),
    Scenario(7, "workers", workers.run),
    Scenario(8, "delivery", delivery.run),
    Scenario(9, "routing", routing.run),
)
