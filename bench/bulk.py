"""/v1/bulk benchmark (issue 4): what batching saves, and what one sub-request costs.

    .venv/bin/python -m bench.bulk [--database-url URL] [--rounds 30]
    make bench-bulk BENCH_ARGS="--rounds 30"

Scenario 5 of the benchmark suite (bench/scenarios/bulk.py) on its own, through the shared harness
(bench/harness.py): `python -m server serve` and Envoy on loopback ports, a fresh SQLite file unless
--database-url (or BENCH_DATABASE_URL) names a PostgreSQL server.

1. 50 GETs (GET /v1/exceptions/{id} of 50 existing exceptions) as one POST /v1/bulk vs as 50
   sequential REST calls on one keep-alive HTTP/1.1 connection, --rounds of each; the same over
   gRPC (BulkService/Batch vs 50 GetException calls).
2. Per-sub-request overhead vs a direct gRPC call: the marginal time of one more GET in a gRPC
   Batch ((p50 of 50 GETs - p50 of 1 GET) / 49) next to a direct gRPC GetException.

Results go to bench/results/bulk-<UTC time>.json and .md and are printed as Markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from bench import suite
from bench.harness import PLANS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL") or None)
    parser.add_argument("--rounds", type=int, default=30, help="rounds of 50 GETs each way")
    args = parser.parse_args(argv)
    plan = replace(PLANS["full"], name="bulk", repeats=1, rounds=args.rounds)
    return suite.standalone(plan, 5, args.database_url, "bulk-")


if __name__ == "__main__":
    sys.exit(main())
