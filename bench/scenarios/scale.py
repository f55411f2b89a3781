"""Scenario 6, scale: GetException and ListExceptions p50/p99 over REST as one tenant grows to
10k, 100k and (make bench only) 1M exceptions.

A stack of its own; the tiers are seeded one after the other into the same tenant, straight into
the database (bench/seed.py), and measured after each. Gets rotate over 1000 ids spread evenly over
all rows seeded so far (index lookups all over the table, not one cached row); lists ask for the
first page of 20 newest, and for the first page of one status (the filtered work-queue index).
"""

from __future__ import annotations

import time

from bench.drivers import RestLoad
from bench.harness import TENANT, Bench
from bench.seed import seed_exceptions

SCENARIO = "6 scale"
SPREAD = 1000


def label(size: int) -> str:
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if size >= unit and size % unit == 0:
            return f"{size // unit}{name}"
    return str(size)


def run(bench: Bench) -> None:
    sizes = bench.plan.scale_sizes
    with bench.stack("scale") as target:
        auth = (("Authorization", f"Bearer {target.token}"),)
        seeded = 0
        tiers: list[tuple[int, list[str]]] = []  # (rows added, a sample of their ids)
        for size in sizes:
            started = time.perf_counter()
            tiers.append(
                (size - seeded, seed_exceptions(target.database_url, TENANT, size - seeded, start=seeded))
            )
            seconds = time.perf_counter() - started
            bench.log(f"  seeded {size - seeded:,} exceptions in {seconds:.1f} s ({size:,} in the tenant)")
            seeded = size
            ids = [i for count, sample in tiers for i in sample[: max(1, SPREAD * count // size)]]
            note = f"{size:,} exceptions in the tenant (this tier seeded in {seconds:.1f} s)"
            name = f"scale_{label(size)}"
            bench.measure(
                SCENARIO,
                f"{name}_get_rest",
                target,
                RestLoad(tuple(f"/v1/exceptions/{i}" for i in ids), headers=auth),
                note=f"{note}; gets over {len(ids)} ids",
            )
            bench.measure(
                SCENARIO,
                f"{name}_list_rest",
                target,
                RestLoad(("/v1/exceptions?limit=20",), headers=auth),
                note=note,
            )
            bench.measure(
                SCENARIO,
                f"{name}_list_status_rest",
                target,
                RestLoad(("/v1/exceptions?limit=20&status=ASSIGNED",), headers=auth),
                note=f"{note}; a quarter of them ASSIGNED",
            )
    small, large = label(sizes[0]), label(sizes[-1])
    for kind in ("get", "list", "list_status"):
        for key in ("p50_ms", "p99_ms"):
            bench.ratio(
                f"{kind} at {large} / at {small} ({key})",
                f"scale_{large}_{kind}_rest",
                f"scale_{small}_{kind}_rest",
                key,
                "issue 7 target for p50: <= 2" if key == "p50_ms" else "tail growth with table size",
            )
