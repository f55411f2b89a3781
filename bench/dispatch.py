"""Dispatch benchmark (issue 5): a 100-item bulk dispatch to the webhook and JIRA stand-ins,
sequential (DISPATCH_POOL_SIZE=1) vs pooled (DISPATCH_POOL_SIZE=8).

    .venv/bin/python -m bench.dispatch [--rounds 20] [--latency 0.02] [--pool 8] [--database-url URL]
    make bench-dispatch BENCH_ARGS="--rounds 20"

Scenario 3 of the benchmark suite (bench/scenarios/dispatch.py) on its own, through the shared
harness (bench/harness.py): `python -m server serve` and Envoy on loopback ports, REST, a fresh
SQLite file unless --database-url (or BENCH_DATABASE_URL) names a PostgreSQL server. The stand-ins
(tests/support/standins.py) add --latency seconds to every request, standing in for a real network
and a real target's work; the webhook takes one request per item, JIRA one bulk-create request per
50 items. Per round: 100 new exceptions (untimed), then one POST /v1/exceptions/bulk/dispatch
(timed). The scenario also measures MANUAL (first dispatch and re-dispatch, gRPC and REST) and the
webhook stand-in without latency.

Results go to bench/results/dispatch-<UTC time>.json and .md and are printed as Markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from bench import suite
from bench.harness import PLANS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="100-item dispatches per target and pool")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds each stand-in request takes")
    parser.add_argument("--pool", type=int, default=8, help="DISPATCH_POOL_SIZE of the pooled run")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL") or None)
    args = parser.parse_args(argv)
    plan = replace(
        PLANS["full"],
        name="dispatch",
        repeats=1,
        latency_batches=args.rounds,
        standin_latency=args.latency,
        pooled=args.pool,
    )
    return suite.standalone(plan, 3, args.database_url, "dispatch-")


if __name__ == "__main__":
    sys.exit(main())
