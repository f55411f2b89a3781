"""The result files: bench/results/<timestamp>.json (everything) and <timestamp>.md (the summary)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = (
    ("scenario", "scenario", None),
    ("measure", "name", None),
    ("via", "transport", None),
    ("driver", "driver", None),
    ("conns", "connections", None),
    ("req/s", "rps", 1),
    ("items/s", "items_per_s", 0),
    ("p50 ms", "p50_ms", 2),
    ("p99 ms", "p99_ms", 2),
    ("p99/p50", "tail", 2),
    ("server CPU ms/req", "server_cpu_s_per_req", 3),
    ("Envoy CPU ms/req", "envoy_cpu_s_per_req", 3),
    ("DB stmts/req", "db_statements_per_req", 2),
    ("server peak RSS MiB", "server_peak_rss_mb", 0),
    ("Envoy peak RSS MiB", "envoy_peak_rss_mb", 0),
    ("requests", "requests", None),
    ("errors", "errors", None),
)
_MILLI = {"server_cpu_s_per_req", "envoy_cpu_s_per_req"}


def tail(record: dict[str, Any]) -> float | None:
    """p99 / p50 of a row: how far its slowest calls are from its typical one (issue 19: <= 3 for
    the writes)."""
    p50, p99 = record.get("p50_ms"), record.get("p99_ms")
    return p99 / p50 if p50 and p99 is not None else None


def _cell(record: dict[str, Any], key: str, digits: int | None) -> str:
    value = tail(record) if key == "tail" else record.get(key)
    if value is None:
        return "-"
    # items/s repeats req/s when a request is one item; shown anyway for rows whose "request" is a
    # unit of work of their own (e.g. one delivery of a drain)
    if key == "items_per_s" and record.get("items_per_request", 1) == 1 and not record.get("unit"):
        return "-"
    if key in _MILLI:
        value *= 1000
    if digits is None:
        return str(value)
    return f"{value:,.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        f"# Benchmark {results['started']} ({results['plan']['name']}, {env['database']})",
        "",
        f"Machine: {env['cpus']} CPUs, load average {env['load_before']} before and "
        f"{env['load_after']} after the run. {results['caveat']}",
        f"Drivers: wrk {'yes' if env['tools']['wrk'] else 'no (Python driver)'}, "
        f"h2load {'yes' if env['tools']['h2load'] else 'no (Python driver)'}; "
        f"commit {env['commit']}; took {results['seconds']} s.",
        "",
        "| " + " | ".join(title for title, _, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for m in results["measurements"]:
        lines.append("| " + " | ".join(_cell(m, key, digits) for _, key, digits in COLUMNS) + " |")
    notes = [m for m in results["measurements"] if m.get("note")]
    if notes:
        lines += ["", "Notes:", ""] + [f"- `{m['name']}`: {m['note']}" for m in notes]
    if results["ratios"]:
        lines += [
            "",
            "## Ratios (both sides from this run)",
            "",
            "| ratio | value | meaning |",
            "|---|---|---|",
        ]
        lines += [f"| {r['name']} | {r['value']:.3f} | {r['meaning']} |" for r in results["ratios"]]
    for title, key in (("TODO (not measured yet)", "todo"), ("Skipped in this run", "skipped")):
        if results[key]:
            lines += ["", f"## {title}", ""]
            lines += [f"- {t['scenario']}: {t['what']} — {t['why']}" for t in results[key]]
    for extra in results.get("extras", []):
        lines += ["", f"## {extra['title']}", "", *extra["lines"]]
    for profile in results.get("profiles", []):
        lines += ["", *profile_markdown(profile)]
    return "\n".join(lines) + "\n"


def profile_markdown(profile: dict[str, Any]) -> list[str]:
    title = f"## Profile: `{profile['measurement']}` ({profile['tool']})"
    if profile.get("error"):
        return [title, "", f"No profile: {profile['error']}"]
    lines = [
        title,
        "",
        f"{profile['samples']} samples of the server's Python code (py-spy --gil: the thread holding "
        f"the GIL) while the measurement ran again: {profile['why']}. The GIL was held in "
        f"{profile['gil_held_share']:.0%} of the time; C code that releases it (gRPC core, the "
        f"database engine) is not in these shares. Raw stacks: `{profile['file']}` (collapsed "
        "format: speedscope or flamegraph.pl read it).",
        "",
        "| where the time went (innermost frames, by area) | share |",
        "|---|---|",
    ]
    lines += [f"| {a['area']} | {a['share']:.1%} |" for a in profile["areas"]]
    lines += ["", "| function (self time) | share |", "|---|---|"]
    lines += [f"| `{f['function']}` | {f['share']:.1%} |" for f in profile["self"]]
    lines += ["", "| server function (including callees) | share |", "|---|---|"]
    lines += [f"| `{f['function']}` | {f['share']:.1%} |" for f in profile["cumulative"]]
    return lines


def write(results: dict[str, Any], out_dir: Path, stamp: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stamp}.json", out_dir / f"{stamp}.md"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path
