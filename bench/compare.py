"""The same plan on SQLite and on PostgreSQL, side by side: bench/results/<timestamp>-compare.md.

`make bench` and `make bench-quick` run the suite on SQLite, then on the PostgreSQL server of
BENCH_POSTGRES_URL (bench/__main__.py --also), and write this page from the two result files: every
row's throughput on both and their ratio, and each side's p99/p50. Ratios only: both runs come from
one invocation on one machine, minutes apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import tail


def _rate(record: dict[str, Any]) -> float | None:
    """items/s where a request carries several items, req/s otherwise."""
    if record.get("items_per_request", 1) != 1 or record.get("unit"):
        return record.get("items_per_s")
    return record.get("rps")


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(first: dict[str, Any], second: dict[str, Any]) -> str:
    a, b = first["environment"]["database"], second["environment"]["database"]
    rows = {m["name"]: m for m in second["measurements"]}
    lines = [
        f"# {b} vs {a}: {first['plan']['name']} plan, runs {first['started']} and {second['started']}",
        "",
        f"Commit {first['environment']['commit']}. Rate: items/s for rows of several items per request, "
        "req/s otherwise. p99/p50 of each side (issue 19: <= 3 for the writes).",
        "",
        f"| measure | via | {a} rate | {b} rate | {b} / {a} | {a} p99/p50 | {b} p99/p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in first["measurements"]:
        other = rows.get(m["name"])
        if other is None:
            continue
        mine, theirs = _rate(m), _rate(other)
        ratio = theirs / mine if mine and theirs is not None else None
        lines.append(
            f"| {m['name']} | {m['transport']} | {_num(mine, 1)} | {_num(theirs, 1)} | "
            f"{_num(ratio, 2)} | {_num(tail(m), 2)} | {_num(tail(other), 2)} |"
        )
    theirs_ratios = {r["name"]: r["value"] for r in second["ratios"]}
    lines += ["", "## The runs' own ratios", "", f"| ratio | {a} | {b} |", "|---|---|---|"]
    for r in first["ratios"]:
        lines.append(f"| {r['name']} | {r['value']:.3f} | {_num(theirs_ratios.get(r['name']), 3)} |")
    return "\n".join(lines) + "\n"


def write(first: dict[str, Any], second: dict[str, Any], out_dir: Path, stamp: str) -> Path:
    path = out_dir / f"{stamp}-compare.md"
    path.write_text(markdown(first, second))
    return path
