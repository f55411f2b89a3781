"""`python -m bench`: the benchmark suite of issue 7 (make bench, make bench-quick).

    .venv/bin/python -m bench [--quick] [--only 1,2] [--database-url URL] [--driver python] [--no-profile]

BENCH_DATABASE_URL (a PostgreSQL server URL) puts every stack on a throwaway database of that
server; without it each stack gets a fresh SQLite file. Results: bench/results/<timestamp>.json and
.md (docs/benchmarks.md explains every column).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench import suite
from bench.harness import PLANS, RESULTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", choices=sorted(PLANS), default="full")
    parser.add_argument("--quick", action="store_const", const="quick", dest="plan", help="= --plan quick")
    parser.add_argument("--only", help="comma-separated scenario numbers, e.g. 1,2")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL") or None)
    parser.add_argument("--driver", choices=("auto", "python"), default="auto")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    only = {int(n) for n in args.only.split(",")} if args.only else None
    results, json_path, md_path = suite.run(
        args.plan,
        database_url=args.database_url,
        only=only,
        driver=args.driver,
        profile=not args.no_profile,
        out_dir=args.out,
    )
    print()
    print(md_path.read_text())
    print(f"written: {json_path}\n         {md_path}")
    errors = sum(m["errors"] for m in results["measurements"])
    if errors:
        print(
            f"{errors} requests failed during the measurements: the numbers above are suspect",
            file=sys.stderr,
        )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
