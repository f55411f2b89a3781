"""Idempotency benchmark (issue 3): what a key costs and what a replay saves.

    .venv/bin/python -m bench.idempotency [--database-url URL] [--rounds 30]
    make bench-idempotency BENCH_ARGS="--rounds 30"

Scenario 4 of the benchmark suite (bench/scenarios/idempotency.py) on its own, through the shared
harness (bench/harness.py): `python -m server serve` processes and Envoy on loopback ports, a fresh
SQLite file unless --database-url (or BENCH_DATABASE_URL) names a PostgreSQL server.

1. First execution vs replay of a 100-item MANUAL bulk dispatch over REST, --rounds of each.
2. CreateException with a new key per request vs one key replayed, under load.
3. Overhead on a call without a key: the same key-less CreateException against two servers on one
   database, one with the interceptor and one without (bench/no_idempotency_server.py), over REST
   and straight over gRPC; server CPU per call and p50 from the same run.
4. The interceptor's own CPU time for a key-less call, in process (no network to hide it).

Results go to bench/results/idempotency-<UTC time>.json and .md and are printed as Markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from bench import suite
from bench.harness import PLANS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idempotency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL") or None)
    parser.add_argument("--rounds", type=int, default=30, help="first/replay pairs of 100-item dispatches")
    args = parser.parse_args(argv)
    plan = replace(PLANS["full"], name="idempotency", repeats=1, rounds=args.rounds)
    return suite.standalone(plan, 4, args.database_url, "idempotency-")


if __name__ == "__main__":
    sys.exit(main())
