"""A py-spy profile of the server while a measurement runs again, saved with the results.

After the scenarios, two measurements whose stack still runs are run again with `py-spy record --gil
--subprocesses --format raw` attached to the server: the hottest (the most server CPU per API call:
a 100-item bulk dispatch is one call, a round of 50 sequential GETs is 50) and GetException over
REST (the hot read path, issue 7's first target). The raw file is the collapsed stacks (one line per
distinct stack: `frame;frame;... samples`); this module turns it into shares by area (which library
the innermost frame is in), by function self time and by function including callees.

Why --gil: only the thread holding the GIL is sampled, i.e. Python code running. Without it py-spy
counts the gRPC pool's workers blocked in queue.get() and condition waits as busy (tried: 70% of
"samples" were idle workers), which drowns the real work. What --gil cannot show is C code that
releases the GIL (gRPC core, the SQLite engine, libpq); `gil_held_share` (samples / expected
samples) says how much of the time Python held the GIL at all: near 1.0, the process is bound by
its Python code.
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import ROOT, Bench

HOT_READ = "get_exception_rest"
MAX_REPLAYS = 20
RATE = 400  # samples per second
TOP = 15
TOP_PROJECT = 25

# (area, test on "function (path:line)") — first match wins; tested on the innermost frame.
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("database driver + SQL", ("do_execute", "psycopg/", "sqlite3/", "pysqlite")),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("protobuf", ("protobuf/",)),
    ("gRPC (Python side)", ("grpc/", "grpc_", "_server.py")),
    ("logging", ("logging/", "server/logs.py")),
    ("JSON", ("json/",)),
    ("HTTP client (connectors)", ("httpx/", "httpcore/", "h11/", "ssl.py", "socket.py")),
    ("metrics", ("prometheus_client/",)),
    ("server: interceptors", ("server/rpc/interceptors/",)),
    ("server: rpc (servicers, converters, bulk)", ("server/rpc/",)),
    ("server: storage", ("server/storage/",)),
    ("server: services + domain", ("server/services/", "server/domain/")),
    ("server: connectors", ("server/connectors/",)),
    ("server: other", ("server/",)),
    ("threads, queues, locks", ("threading.py", "queue.py", "concurrent/futures/")),
    # py-spy prints paths relative to sys.path, so the standard library shows as bare module names.
    (
        "other stdlib (uuid, datetime, dataclass __init__, enum, ...)",
        (
            *("/lib/python3", "<frozen", "<string>", "uuid.py", "calendar.py", "collections/"),
            *("enum.py", "dataclasses.py", "functools.py", "typing.py", "contextlib.py", "abc.py"),
            *("re/", "copy.py", "datetime.py", "decimal.py", "_strptime.py", "hashlib.py", "hmac.py"),
            *("base64.py", "weakref.py"),
        ),
    ),
)


# "Including callees" lists the project's own functions only: the thread and gRPC frames around
# every call would otherwise fill the table at ~100%.
PROJECT = tuple(f"(server/{p}" for p in ("rpc", "services", "storage", "domain", "connectors", "metrics"))


def py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(sys.executable).parent / "py-spy")
        if (Path(sys.executable).parent / "py-spy").exists()
        else None
    )


def profile_hottest(bench: Bench, out_dir: Path, stamp: str) -> list[dict[str, Any]]:
    live = [m for m in bench.measurements if m["name"] in bench.replays and m["server_cpu_s_per_req"]]
    if not live:
        return []
    hottest = max(live, key=lambda m: m["server_cpu_s_per_req"] / m["calls_per_request"])
    chosen = [(hottest["name"], "the most server CPU per API call in this run")]
    if HOT_READ in bench.replays and hottest["name"] != HOT_READ:
        chosen.append((HOT_READ, "the hot read path: issue 7's first target"))
    bench.log("[profile]")
    return [profile(bench, name, why, out_dir, stamp) for name, why in chosen]


def profile(bench: Bench, name: str, why: str, out_dir: Path, stamp: str) -> dict[str, Any]:
    record: dict[str, Any] = {"measurement": name, "why": why, "tool": "py-spy"}
    tool = py_spy()
    if tool is None:
        return {**record, "error": "py-spy is not installed (make bench installs it into the virtualenv)"}
    replay = bench.replays[name]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stamp}-profile-{name}.txt"
    # Every run's setup first (e.g. creating the exceptions a first dispatch needs): not profiled.
    runs = max(1, min(MAX_REPLAYS, math.ceil(bench.plan.profile_seconds / max(replay.seconds, 0.01))))
    prepared = [replay.prepare() for _ in range(runs)]
    command = [tool, "record", "--pid", str(replay.target.server_pids[0]), "--subprocesses", "--gil"]
    command += ["--format", "raw", "--rate", str(RATE), "--duration", "600", "--output", str(path)]
    spy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.0)  # attached and sampling before the load starts
        started = time.perf_counter()
        for items in prepared:
            replay.run(items)
    finally:
        recorded = time.perf_counter() - started
        spy.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        try:
            output, _ = spy.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            output, _ = spy.communicate()
    if not path.exists() or not path.read_text().strip():
        return {**record, "error": f"py-spy wrote nothing: {output.strip()[-500:]}"}
    bench.log(f"  {name}: {runs} runs under py-spy -> {path.name}")
    try:
        shown = str(path.relative_to(ROOT))
    except ValueError:
        shown = str(path)
    summary = summarize(path.read_text())
    expected = RATE * max(recorded, 0.1)
    return {
        **record,
        "file": shown,
        "runs": runs,
        "gil_held_share": round(summary["samples"] / expected, 3),
        **summary,
    }


def _function(frame: str) -> str:
    """'fn (path/to/file.py:12)' -> 'fn (file.py)' with the path shortened to its package."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def _area(frame: str) -> str:
    for area, needles in AREAS:
        if any(n in frame for n in needles):
            return area
    return "other"


def summarize(collapsed: str) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if " (" in f and not f.startswith("process ")]
        if not frames:
            continue
        n = int(count)
        total += n
        self_time[_function(frames[-1])] += n
        areas[_area(frames[-1])] += n
        for function in {_function(f) for f in frames}:
            if any(marker in function for marker in PROJECT):
                cumulative[function] += n

    def top(counter: Counter[str], count: int = TOP) -> list[dict[str, Any]]:
        return [{"function": f, "share": round(n / total, 4)} for f, n in counter.most_common(count)]

    return {
        "samples": total,
        "areas": [{"area": a, "share": round(n / total, 4)} for a, n in areas.most_common()] if total else [],
        "self": top(self_time) if total else [],
        "cumulative": top(cumulative, TOP_PROJECT) if total else [],
    }
