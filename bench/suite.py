"""Runs the scenario list through one Bench and writes the results (bench/__main__.py is the CLI:
`python -m bench` for the suite, `python -m bench dispatch|idempotency|bulk|delivery` for one
scenario alone)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import profiling, report
from bench.harness import PLANS, RESULTS, ROOT, Bench, Plan, load_average
from bench.scenarios import SCENARIOS

CAVEAT = (
    "Numbers from a shared 2-core machine where other jobs run too: compare ratios within one run, "
    "not absolute numbers between runs."
)


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def run(
    plan: str | Plan = "full",
    *,
    database_url: str | None = None,
    only: set[int] | None = None,
    driver: str = "auto",
    profile: bool = True,
    out_dir: Path = RESULTS,
    prefix: str = "",
    log=print,
) -> tuple[dict[str, Any], Path, Path]:
    """Runs the scenarios (all, or the numbers in `only`) and writes out_dir/<prefix><timestamp>.json
    and .md; returns the results and both paths."""
    plan = PLANS[plan] if isinstance(plan, str) else plan
    started, clock = datetime.now(UTC), time.perf_counter()
    stamp = prefix + started.strftime("%Y%m%dT%H%M%SZ")
    load_before = load_average()
    bench = Bench(plan, database_url=database_url, driver=driver, log=log)
    profiles: list[dict[str, Any]] = []
    try:
        for scenario in SCENARIOS:
            if only and scenario.number not in only:
                continue
            log(f"[{scenario.number}] {scenario.name}")
            scenario.run(bench)
        if profile:
            profiles = profiling.profile_hottest(bench, out_dir, stamp)
    finally:
        bench.close()
    results = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - clock, 1),
        "plan": plan.__dict__,
        "caveat": CAVEAT,
        "environment": {
            "database": bench.database,
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": load_average(),
            "python": platform.python_version(),
            "tools": bench.tools,
            "commit": _commit(),
        },
        "measurements": bench.measurements,
        "ratios": bench.ratios,
        "todo": bench.todos,
        "skipped": bench.skipped,
        "extras": bench.extras,
        "profiles": profiles,
    }
    json_path, md_path = report.write(results, out_dir, stamp)
    return results, json_path, md_path
