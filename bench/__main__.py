"""`python -m bench`: the one entry point of the benchmarks (make bench, bench-quick, bench-dispatch,
bench-idempotency, bench-bulk; docs/benchmarks.md explains every scenario and column).

    .venv/bin/python -m bench [--quick] [--only 1,2 | --only reads,bulk] [--no-profile] [--also URL] [COMMON]
        the suite of issue 7: every scenario of bench/scenarios/ (or those of --only), then a py-spy
        profile; results bench/results/<timestamp>.json and .md (+ <timestamp>-profile-*.txt);
        with --also a PostgreSQL URL, the same plan again on that server (no profile), and
        <timestamp>-compare.md side by side (make bench passes BENCH_POSTGRES_URL)
    .venv/bin/python -m bench dispatch [--rounds 20] [--latency 0.02] [--per-host 8] [COMMON]
    .venv/bin/python -m bench idempotency [--rounds 30] [COMMON]
    .venv/bin/python -m bench bulk [--rounds 30] [COMMON]
    .venv/bin/python -m bench delivery [--items 10000] [--latency 0.02] [COMMON]
    .venv/bin/python -m bench routing [COMMON]
        one scenario alone (3, 4, 5, 8, 9: issues 5, 3, 4, 14, 17), full plan with one repeat, no profile;
        results bench/results/<command>-<timestamp>.json and .md

COMMON: --database-url URL (default BENCH_DATABASE_URL: a PostgreSQL server; every stack then gets a
throwaway database of it, without it a fresh SQLite file), --driver python, --out DIR, and --dry-run
(print the plan, the scenarios and the result paths; start nothing).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench import compare, suite
from bench.harness import PLANS, RESULTS, ROOT, Plan
from bench.scenarios import SCENARIOS


@dataclass(frozen=True)
class Option:
    flag: str
    field: str  # the Plan field it sets
    type: type
    default: float
    help: str
    aliases: tuple[str, ...] = ()  # older spellings of the flag, still accepted


@dataclass(frozen=True)
class Single:
    """One scenario on its own: PLANS["full"] with one repeat and these overrides, no profile."""

    scenario: int
    help: str
    options: tuple[Option, ...]


SINGLES = {
    "dispatch": Single(
        3,
        "scenario 3 alone (issue 5): 100-item bulk dispatch to the webhook and JIRA stand-ins taking "
        "--latency s per request, DELIVERY_MAX_PER_HOST=1 vs --per-host; plus the scenario's MANUAL "
        "and no-latency webhook rows",
        (
            Option("--rounds", "latency_batches", int, 20, "100-item dispatches per target and setting"),
            Option("--latency", "standin_latency", float, 0.02, "seconds each stand-in request takes"),
            Option(
                "--per-host",
                "pooled",
                int,
                8,
                "DELIVERY_MAX_PER_HOST of the parallel run",
                aliases=("--pool",),
            ),
        ),
    ),
    "idempotency": Single(
        4,
        "scenario 4 alone (issue 3): keyed first execution vs replay (100-item dispatch, "
        "CreateException) and the interceptor's cost on a key-less call",
        (Option("--rounds", "rounds", int, 30, "first/replay pairs of 100-item dispatches"),),
    ),
    "bulk": Single(
        5,
        "scenario 5 alone (issue 4): 50 GETs in one /v1/bulk (gRPC Batch) vs one by one, and one more "
        "sub-request vs a direct gRPC call",
        (Option("--rounds", "rounds", int, 30, "rounds of 50 GETs each way"),),
    ),
    "delivery": Single(
        8,
        "scenario 8 alone (issue 14): --items webhook deliveries queued behind a paused target, "
        "drained after resume (stand-in answering in --latency s); MANUAL dispatch with and without "
        "other tenants' deliveries trickling",
        (
            Option("--items", "drain_items", int, 10_000, "deliveries to drain (a multiple of 100)"),
            Option("--latency", "drain_latency", float, 0.02, "seconds the stand-in takes per delivery"),
        ),
    ),
    "routing": Single(
        9,
        "scenario 9 alone (issue 17): 100-item bulk dispatch routed by rules vs explicit, and the "
        "overdue list at the plan's smallest and largest scale (10k, 1M)",
        (),
    ),
}


def _add_common(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Options valid before and after a command; only the top level sets defaults (a subparser's
    default would overwrite a value given before the command)."""

    def default(value):
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--database-url",
        default=default(os.environ.get("BENCH_DATABASE_URL") or None),
        help="a PostgreSQL server URL (default: BENCH_DATABASE_URL); without it, fresh SQLite files",
    )
    parser.add_argument(
        "--driver",
        choices=("auto", "python"),
        default=default("auto"),
        help="python: the Python load driver even where wrk/h2load are installed",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=default(RESULTS),
        help=f"results directory (default {RESULTS.relative_to(ROOT)}/)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=default(False),
        help="print the plan, the scenarios and the result paths; start nothing",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        usage="%(prog)s [--quick | --plan PLAN] [--only LIST] [--no-profile] [COMMON]\n"
        "       %(prog)s {dispatch,idempotency,bulk,delivery,routing} [OPTIONS] [COMMON]",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--plan", choices=sorted(PLANS), help="suite plan (default full)")
    parser.add_argument("--quick", action="store_const", const="quick", dest="plan", help="= --plan quick")
    names = ", ".join(s.name for s in SCENARIOS)
    parser.add_argument(
        "--only", metavar="LIST", help=f"comma-separated scenario numbers or names ({names}), e.g. 1,2"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument(
        "--also",
        metavar="URL",
        help="after the run, the same plan on this PostgreSQL server, and a side-by-side page "
        "(skipped with a note when the server does not answer)",
    )
    _add_common(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", title="one scenario alone (instead of the suite)")
    for name, single in SINGLES.items():
        sub = commands.add_parser(name, help=single.help, description=single.help)
        for option in single.options:
            sub.add_argument(
                option.flag,
                *option.aliases,
                dest=option.field,
                metavar="N" if option.type is int else "S",
                type=option.type,
                default=option.default,
                help=f"{option.help} (default {option.default})",
            )
        _add_common(sub, defaults=False)
    return parser


def _scenarios(only: str, parser: argparse.ArgumentParser) -> set[int]:
    by_name = {s.name: s.number for s in SCENARIOS}
    numbers = set()
    for item in (part.strip() for part in only.split(",") if part.strip()):
        number = int(item) if item.isdigit() else by_name.get(item)
        if number not in by_name.values():
            parser.error(f"--only: no scenario {item!r} (numbers 1-{len(SCENARIOS)} or {', '.join(by_name)})")
        numbers.add(number)
    return numbers


def _dry_run(plan: Plan, only: set[int] | None, profile: bool, prefix: str, args) -> None:
    database = "a fresh SQLite file per stack"
    if args.database_url:
        url = make_url(args.database_url).render_as_string(hide_password=True)
        database = f"a throwaway database per stack on {url}"
    print(f"plan: {plan}")
    for scenario in SCENARIOS:
        if not only or scenario.number in only:
            print(f"scenario {scenario.number} {scenario.name}")
    print(f"driver: {args.driver}; database: {database}; profile: {'yes' if profile else 'no'}")
    print(f"results: {args.out}/{prefix}<UTC timestamp>.json and .md")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command:
        if args.plan or args.only or args.no_profile or args.also:
            suite_only = "--plan, --quick, --only, --no-profile and --also"
            parser.error(f"{suite_only} are the suite's, not {args.command}'s")
        single = SINGLES[args.command]
        overrides = {option.field: getattr(args, option.field) for option in single.options}
        plan = replace(PLANS["full"], name=args.command, repeats=1, **overrides)
        only, profile, prefix = {single.scenario}, False, f"{args.command}-"
    else:
        plan = PLANS[args.plan or "full"]
        only = _scenarios(args.only, parser) if args.only else None
        profile, prefix = not args.no_profile, ""
    if args.dry_run:
        _dry_run(plan, only, profile, prefix, args)
        return 0
    results, json_path, md_path = suite.run(
        plan,
        database_url=args.database_url,
        only=only,
        driver=args.driver,
        profile=profile,
        out_dir=args.out,
        prefix=prefix,
    )
    print()
    print(md_path.read_text())
    print(f"written: {json_path}\n         {md_path}")
    errors = sum(m["errors"] for m in results["measurements"])
    if args.also and not args.command:
        errors += _also(args.also, results, plan, only, args, stamp=md_path.stem)
    if errors:
        print(
            f"{errors} requests failed during the measurements: the numbers above are suspect",
            file=sys.stderr,
        )
    return 1 if errors else 0


def _answers(url: str) -> str | None:
    """None when the PostgreSQL server at `url` answers; else why not."""
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return None
    except Exception as exc:  # any failure: no PostgreSQL run, and the reason said
        return str(exc).splitlines()[0]
    finally:
        engine.dispose()


def _also(url: str, first: dict, plan: Plan, only: set[int] | None, args, *, stamp: str) -> int:
    """The same plan on PostgreSQL and the side-by-side page; returns the failed requests."""
    shown = make_url(url).render_as_string(hide_password=True)
    why_not = _answers(url)
    if why_not is not None:
        print(f"\nno PostgreSQL run: {shown} does not answer ({why_not})")
        return 0
    print(f"\nthe same plan on PostgreSQL ({shown})")
    second, json_path, md_path = suite.run(
        plan, database_url=url, only=only, driver=args.driver, profile=False, out_dir=args.out
    )
    compared = compare.write(first, second, args.out, stamp)
    print(md_path.read_text())
    print(compared.read_text())
    print(f"written: {json_path}\n         {md_path}\n         {compared}")
    return sum(m["errors"] for m in second["measurements"])


if __name__ == "__main__":
    sys.exit(main())
