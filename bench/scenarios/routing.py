"""Scenario 9, routing and SLA (issue 17, API.md §8):

- routed vs explicit: 100-item bulk dispatches to MANUAL, first dispatch of fresh exceptions, over
  REST, in the same run: once naming `target_system`, once without it, so that each item is routed by
  the tenant's rules (ten rules whose conditions fail before the last, a catch-all, matches; the rules
  come from each process's cache: one primary-key read per call). The difference is the routing:
  one rules-generation read, ten rules evaluated per item, the ROUTE history entries and overrides;
- overdue list: `GET /v1/exceptions?overdue=true&limit=20` p50/p99 as one tenant grows to the plan's
  scale sizes (10k and 1M in `make bench`), seeded straight into the database with SLA due dates
  (bench/seed.py), three of four unresolved and overdue.

`python -m bench routing` runs this scenario alone.
"""

from __future__ import annotations

import time

from bench.drivers import RestLoad
from bench.harness import TENANT, Bench, Target
from bench.scenarios.dispatch import first_dispatch
from bench.scenarios.scale import label
from bench.seed import seed_exceptions

SCENARIO = "9 routing"


def add_rules(target: Target) -> None:
    """Ten rules that never match these exceptions (wrong source), then a catch-all to MANUAL."""
    with target.client() as client:
        for priority in range(10):
            response = client.post(
                "/v1/routing-rules",
                json={
                    "name": f"never {priority}",
                    "priority": priority,
                    "conditions": {
                        "sources": [f"elsewhere-{priority}"],
                        "min_amount": "1",
                        "currency": "EUR",
                    },
                    "action": {"target_system": "MANUAL", "queue": f"q{priority}"},
                },
            )
            response.raise_for_status()
        response = client.post(
            "/v1/routing-rules",
            json={
                "name": "everything else",
                "priority": 100,
                "conditions": {"severities": ["LOW", "MEDIUM", "HIGH", "CRITICAL"]},
                "action": {"target_system": "MANUAL", "queue": "routed"},
            },
        )
        response.raise_for_status()


def run(bench: Bench) -> None:
    with bench.stack("routing") as target:
        add_rules(target)
        first_dispatch(
            bench,
            "dispatch_explicit_first_rest",
            target,
            "rest",
            "MANUAL",
            scenario=SCENARIO,
            note="first dispatch of 100 fresh exceptions per call, target_system MANUAL (rules bypassed)",
        )
        first_dispatch(
            bench,
            "dispatch_routed_first_rest",
            target,
            "rest",
            "",
            scenario=SCENARIO,
            note="first dispatch of 100 fresh exceptions per call without target_system: each routed by "
            "11 rules (the last matches) to MANUAL, with a ROUTE history entry",
        )
        bench.ratio(
            "routed / explicit first dispatch (items/s)",
            "dispatch_routed_first_rest",
            "dispatch_explicit_first_rest",
            "items_per_s",
            "the cost of routing 100 items by 11 rules",
        )
    sizes = bench.plan.scale_sizes
    with bench.stack("overdue") as target:
        auth = (("Authorization", f"Bearer {target.token}"),)
        seeded = 0
        for size in (sizes[0], sizes[-1]) if len(sizes) > 1 else sizes:
            started = time.perf_counter()
            seed_exceptions(target.database_url, TENANT, size - seeded, start=seeded)
            seconds = time.perf_counter() - started
            bench.log(f"  seeded {size - seeded:,} exceptions in {seconds:.1f} s ({size:,} in the tenant)")
            seeded = size
            bench.measure(
                SCENARIO,
                f"overdue_{label(size)}_list_rest",
                target,
                RestLoad(("/v1/exceptions?overdue=true&limit=20",), headers=auth),
                note=f"{size:,} exceptions in the tenant, three of four unresolved and overdue; first page, "
                "most overdue first",
            )
    if len(sizes) > 1:
        small, large = label(sizes[0]), label(sizes[-1])
        bench.ratio(
            f"overdue list at {large} / at {small} (p50_ms)",
            f"overdue_{large}_list_rest",
            f"overdue_{small}_list_rest",
            "p50_ms",
            "index range walk: should stay flat",
        )
