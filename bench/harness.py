"""The shared bench harness: stacks, load, /proc sampling, statistics and the result record.

Scenario modules (bench/scenarios/) describe what to send; this module starts the real stack
(tests/support/stack.py: `python -m server serve` + Envoy on free loopback ports), picks a load
driver (bench/drivers.py), samples the server and Envoy processes around every measured run, and
keeps one record per measurement:

    rps / items_per_s     median over the repeats
    p50_ms / p99_ms       median over the repeats of each repeat's percentile
    server_cpu_s_per_req  (utime+stime of the server process tree after - before) / requests,
                          from /proc/<pid>/stat; Envoy's the same way
    *_peak_rss_mb         VmHWM from /proc/<pid>/status after the last repeat (the process's peak
                          since it started: a stack's later measurements include earlier peaks)
    errors                failures the client saw + non-OK calls the server counted (Prometheus)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from sqlalchemy.engine import make_url

from bench import drivers
from bench.drivers import GrpcLoad, Load, LoadRun, RestLoad

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCOPES = ("exceptions:read", "exceptions:write", "exceptions:dispatch", "targets:admin")
TENANT = "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    name: str
    seconds: float  # one measured run of a duration-based load
    warmup: float  # unmeasured load before the first run (same request)
    repeats: int  # measured runs per measurement
    connections: int  # concurrent connections (wrk -c, h2load -c, Python threads)
    dispatch_batches: int  # fresh 100-item batches dispatched per repeat
    rounds: int  # sequential rounds (first vs replay, /v1/bulk vs one by one)
    scale_sizes: tuple[int, ...]  # exceptions in one tenant, scenario 6
    read_rows: int  # exceptions behind the read scenarios
    profile_seconds: float
    # Dispatch to stand-ins that take `standin_latency` s per request, DELIVERY_MAX_PER_HOST=1 vs
    # `pooled`: 100-item batches per repeat (one delivery at a time: ~100 x latency each).
    latency_batches: int = 4
    standin_latency: float = 0.02
    pooled: int = 8
    # Scenario 8: deliveries queued behind a paused webhook, drained after resume (the stand-in
    # answering in `drain_latency` s); 100-item MANUAL dispatches by another tenant, measured while
    # `trickle_deliveries` deliveries trickle (one byte a second, cut at `trickle_timeout` s) and without.
    drain_items: int = 10_000
    drain_latency: float = 0.02
    trickle_deliveries: int = 32
    trickle_timeout: float = 5.0
    trickle_calls: int = 40


PLANS = {
    "full": Plan(
        "full",
        seconds=5.0,
        warmup=1.0,
        repeats=3,
        connections=8,
        dispatch_batches=10,
        rounds=20,
        scale_sizes=(10_000, 100_000, 1_000_000),
        read_rows=1000,
        profile_seconds=10.0,
    ),
    "quick": Plan(
        "quick",
        seconds=1.0,
        warmup=0.3,
        repeats=1,
        connections=8,
        dispatch_batches=3,
        rounds=4,
        scale_sizes=(10_000, 100_000),
        read_rows=1000,
        profile_seconds=2.0,
        latency_batches=1,
        drain_items=2_000,
        trickle_calls=20,
    ),
    # One tiny iteration of everything (the smoke test): proves the code runs, measures nothing.
    "smoke": Plan(
        "smoke",
        seconds=0.3,
        warmup=0.1,
        repeats=1,
        connections=2,
        dispatch_batches=1,
        rounds=1,
        scale_sizes=(200, 400),
        read_rows=50,
        profile_seconds=0.5,
        latency_batches=1,
        standin_latency=0.0,
        pooled=2,
        drain_items=100,
        trickle_deliveries=4,
        trickle_timeout=2.0,
        trickle_calls=2,
    ),
}


# -- /proc sampling -------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state is [0], ppid [1]


def process_tree(roots: Sequence[int]) -> list[int]:
    """The roots and all their live descendants (e.g. WORKERS forked by the supervisor)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def cpu_seconds(roots: Sequence[int]) -> float:
    """utime+stime of every live process in the trees, plus what the roots reaped from dead children."""
    total = 0
    for pid in process_tree(roots):
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
            if pid in roots:
                total += int(fields[13]) + int(fields[14])
    return total / CLOCK_TICKS


def peak_rss_mb(roots: Sequence[int]) -> float:
    """Sum of VmHWM (peak resident set) over the process trees, in MiB."""
    total_kb = 0
    for pid in process_tree(roots):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            match = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
            total_kb += int(match.group(1)) if match else 0
    return round(total_kb / 1024, 1)


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


_CALLS = re.compile(r"^reconrouter_rpc_calls_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)", re.M)


_STATEMENTS = re.compile(r"^reconrouter_db_statements_total\s+(?P<value>\S+)", re.M)


def _metrics_texts(metrics_ports: Sequence[int]) -> list[str]:
    return [httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text for port in metrics_ports]


def call_counts(texts: Sequence[str]) -> Counter[tuple[str, str]]:
    """Finished calls by (rpc, code), summed over the servers' Prometheus pages."""
    counts: Counter[tuple[str, str]] = Counter()
    for text in texts:
        for m in _CALLS.finditer(text):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group("labels")))
            counts[(labels.get("rpc", ""), labels.get("code", ""))] += int(float(m.group("value")))
    return counts


def statement_count(texts: Sequence[str]) -> int:
    """Statements the servers sent to the database (reconrouter_db_statements_total, summed)."""
    return sum(int(float(m.group("value"))) for text in texts for m in _STATEMENTS.finditer(text))


# -- what a load runs against ---------------------------------------------------------------------


@dataclass
class Target:
    """A running stack (one server, WORKERS, or replicas) behind one Envoy, and a token for it."""

    label: str
    base_url: str
    grpc_target: str | None  # None for a cluster: gRPC goes through Envoy only
    server_pids: list[int]
    envoy_pid: int
    metrics_ports: list[int]
    token: str
    database_url: str
    # A token of another tenant (tenant -> bearer token, the stack's own scopes).
    new_token: Callable[[str], str] | None = None
    alive: bool = True

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=dict(self.auth), timeout=timeout)

    def quiesce(self, run: LoadRun, timeout: float = 15.0) -> None:
        """Wait until the calls a timed load cut off have ended: they would otherwise end (as
        CANCELLED or UNKNOWN) inside the next measured window. A cut-off call was in flight for at
        most about one latency, so: no call finished over twice the run's p99 (at least 0.3 s)."""
        p99 = run.percentile(99)
        window = min(5.0, max(0.3, 2 * (p99 if p99 == p99 else 0) / 1000))
        deadline = time.monotonic() + timeout
        last = self._finished_calls()
        while time.monotonic() < deadline:
            time.sleep(window)
            now = self._finished_calls()
            if now == last:
                return
            last = now

    def _finished_calls(self) -> int:
        # Envoy's health checks (grpc.health.v1 Check, every second) never stop: not counted.
        counts = call_counts(_metrics_texts(self.metrics_ports))
        return sum(n for (rpc, _), n in counts.items() if rpc != "Check")

    def sample(self) -> dict[str, Any]:
        texts = _metrics_texts(self.metrics_ports)
        return {
            "server_cpu": cpu_seconds(self.server_pids),
            "envoy_cpu": cpu_seconds([self.envoy_pid]),
            "calls": call_counts(texts),
            "statements": statement_count(texts),
            "at": time.perf_counter(),
        }


@dataclass
class Replay:
    """One more measured run of a measurement: run(prepare()); prepare is the unmeasured setup."""

    target: Target
    prepare: Callable[[], Any]
    run: Callable[[Any], dict[str, Any]]
    seconds: float  # how long one run took, median


# -- statistics -----------------------------------------------------------------------------------


def _round(value: float, digits: int = 3) -> float | None:
    return None if value is None or value != value else round(value, digits)  # NaN -> None


def _run_record(run: LoadRun, before: dict, after: dict) -> dict[str, Any]:
    delta = after["calls"] - before["calls"]
    # A load tool stops with calls in flight: the server records those as CANCELLED (not a failure).
    non_ok = Counter({code: n for (_, code), n in delta.items() if code not in ("OK", "CANCELLED")})
    return {
        "driver": run.driver,
        "requests": run.requests,
        "client_errors": run.errors,
        "server_non_ok": sum(non_ok.values()),
        "server_non_ok_codes": dict(non_ok),
        "server_cancelled": sum(n for (_, code), n in delta.items() if code == "CANCELLED"),
        "server_calls": sum(delta.values()),
        "seconds": _round(run.seconds),
        "rps": _round(run.rps, 1),
        "p50_ms": _round(run.percentile(50)),
        "p99_ms": _round(run.percentile(99)),
        "server_cpu_s": _round(after["server_cpu"] - before["server_cpu"], 2),
        "envoy_cpu_s": _round(after["envoy_cpu"] - before["envoy_cpu"], 2),
        # Envoy's health checks (one a second) touch no table; /healthz would add a SELECT 1.
        "db_statements": after["statements"] - before["statements"],
    }


def summarize(runs: list[dict[str, Any]], items_per_request: int) -> dict[str, Any]:
    requests = sum(r["requests"] for r in runs)

    def median(key: str) -> float | None:
        values = [r[key] for r in runs if r[key] is not None]
        return _round(statistics.median(values)) if values else None

    rps = median("rps")
    return {
        "requests": requests,
        # wrk and the Python driver see every failure themselves (and wrk's cut-off calls are
        # CANCELLED or worse on the server); h2load sees none of gRPC's, so the server's count is it.
        "errors": sum(
            r["client_errors"] + (r["server_non_ok"] if r["driver"] == "h2load" else 0) for r in runs
        ),
        "rps": rps,
        "items_per_s": _round(rps * items_per_request, 1) if rps is not None else None,
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "server_cpu_s_per_req": _round(sum(r["server_cpu_s"] for r in runs) / requests, 6)
        if requests
        else None,
        "envoy_cpu_s_per_req": _round(sum(r["envoy_cpu_s"] for r in runs) / requests, 6)
        if requests
        else None,
        "db_statements_per_req": _round(sum(r["db_statements"] for r in runs) / requests, 2)
        if requests
        else None,
    }


# -- the harness ----------------------------------------------------------------------------------


@dataclass
class Bench:
    plan: Plan
    database_url: str | None = None  # None: SQLite files; else a PostgreSQL server for fresh databases
    driver: str = "auto"  # "auto": wrk/h2load when installed; "python": the Python driver only
    log: Callable[[str], None] = print
    measurements: list[dict[str, Any]] = field(default_factory=list)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    todos: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    # Findings that are not a load measurement (e.g. an in-process timing): {"title", "data", "lines"}.
    extras: list[dict[str, Any]] = field(default_factory=list)
    # name -> how to run a measurement once more while its stack runs (what the profiler replays).
    replays: dict[str, Replay] = field(default_factory=dict)
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="reconrouter-bench-")))

    def __post_init__(self) -> None:
        self.tools = drivers.available_tools() if self.driver == "auto" else {"wrk": None, "h2load": None}
        self._stacks = 0
        self._main: Target | None = None
        self._cleanup = contextlib.ExitStack()
        # Whatever scenarios share on the main stack (e.g. the exceptions the reads use).
        self.shared: dict[str, Any] = {}

    @property
    def database(self) -> str:
        return make_url(self.database_url).get_backend_name() if self.database_url else "sqlite"

    def main(self) -> Target:
        """The stack most scenarios share (started on first use, stopped by close())."""
        if self._main is None or not self._main.alive:
            self._main = self._cleanup.enter_context(self.stack("main"))
        return self._main

    def close(self) -> None:
        try:
            self._cleanup.close()
        finally:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- stacks -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def fresh_database(self, label: str) -> Iterator[str]:
        if self.database_url is None:
            yield f"sqlite:///{self.work_dir / label / 'bench.db'}"
            return
        from tests.support.databases import fresh_postgres_url

        with fresh_postgres_url(self.database_url) as url:
            yield url

    @contextlib.contextmanager
    def stack(
        self,
        label: str,
        *,
        env: dict[str, str] | None = None,
        replicas: int | None = None,
        server_module: str | None = None,
        database_url: str | None = None,
    ) -> Iterator[Target]:
        """A server (WORKERS=1 unless env says otherwise; `replicas`: a Cluster) + Envoy on a fresh
        database (or `database_url`, e.g. to put a second server on the same data)."""
        from tests.support.cluster import Cluster
        from tests.support.stack import Stack

        self._stacks += 1
        work = self.work_dir / f"{self._stacks:02d}-{label}"
        settings = {
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_DISPATCH_PER_MINUTE": "0",
            "WORKERS": "1",
            "TARGET_SECRETS_KEY_FILE": str(work / "target_secrets.key"),
            **(env or {}),
        }
        with contextlib.ExitStack() as cleanup:
            url = database_url or cleanup.enter_context(self.fresh_database(f"{self._stacks:02d}-{label}"))
            started = time.perf_counter()
            if replicas is None:
                stack = Stack(url, settings, work_dir=work)
                if server_module:
                    stack.server_module = server_module
                cleanup.enter_context(stack)
                target = Target(
                    label,
                    stack.base_url,
                    stack.grpc_target,
                    [stack.server_process.pid],
                    stack.envoy_process.pid,
                    [stack.metrics_port],
                    stack.create_token(TENANT, SCOPES),
                    url,
                    lambda tenant, stack=stack: stack.create_token(tenant, SCOPES),
                )
            else:
                cluster = Cluster(url, replicas, settings, work_dir=work)
                cleanup.enter_context(cluster)
                target = Target(
                    label,
                    cluster.base_url,
                    None,
                    [r.server_process.pid for r in cluster.replicas],
                    cluster.envoy_process.pid,
                    [r.metrics_port for r in cluster.replicas],
                    cluster.create_token(TENANT, list(SCOPES)),
                    url,
                    lambda tenant, cluster=cluster: cluster.create_token(tenant, list(SCOPES)),
                )
            self.log(f"  stack {label}: up in {time.perf_counter() - started:.1f} s")
            try:
                yield target
            finally:
                target.alive = False
                for name in [n for n, r in self.replays.items() if r.target is target]:
                    del self.replays[name]

    # -- measuring --------------------------------------------------------------------------------

    def probe(self, target: Target, load: Load) -> None:
        """One request before measuring: a load that fails is an error, not a number."""
        if isinstance(load, RestLoad):
            client = drivers.RestClient(target.base_url)
            try:
                headers = dict(load.headers)
                if load.unique_header:
                    headers[load.unique_header] = f"probe-{time.time_ns()}"
                status, _, body = client.request(load.method, load.paths[0], headers, load.body)
            finally:
                client.close()
            if not 200 <= status < 300:
                raise RuntimeError(f"{load.method} {load.paths[0]} answered {status}: {body[:500]!r}")
        else:
            assert target.grpc_target is not None
            client = drivers.GrpcClient(target.grpc_target)
            try:
                client.call(load.method, load.message, load.metadata)
            except grpc.RpcError as exc:
                raise RuntimeError(f"{load.method} failed: {exc.code()} {exc.details()}") from None
            finally:
                client.close()

    def _tool(self, target: Target, load: Load) -> str:
        if isinstance(load, RestLoad) and self.tools.get("wrk"):
            return "wrk"
        if isinstance(load, GrpcLoad) and self.tools.get("h2load") and target.grpc_target:
            return "h2load"
        return "python"

    def _drive(
        self, target: Target, load: Load, seconds: float, *, tool: str, requests: int | None = None
    ) -> LoadRun:
        c = self.plan.connections
        if tool == "wrk":
            assert isinstance(load, RestLoad)
            return drivers.run_wrk(target.base_url, load, connections=c, seconds=seconds)
        if tool == "h2load":
            assert isinstance(load, GrpcLoad) and target.grpc_target
            return drivers.run_h2load(
                target.grpc_target, load, connections=c, seconds=seconds, requests=requests
            )
        factory, call = drivers.python_call_for(load)
        return drivers.run_python(
            factory(target.base_url, target.grpc_target), call, connections=c, seconds=seconds
        )

    def measure(
        self,
        scenario: str,
        name: str,
        target: Target,
        load: Load,
        *,
        items_per_request: int = 1,
        note: str = "",
    ) -> dict[str, Any]:
        """Warm up, then `plan.repeats` runs of `plan.seconds` each under /proc sampling."""
        self.probe(target, load)
        tool = self._tool(target, load)
        # wrk runs whole seconds only: shorter warm-ups go through the Python driver.
        warm = self._drive(target, load, self.plan.warmup, tool="python" if tool == "wrk" else tool)
        target.quiesce(warm)
        # h2load: as many calls as the warm-up's rate fills `seconds` with (see run_h2load).
        count = max(4 * self.plan.connections, round(warm.rps * self.plan.seconds))

        def one_run() -> dict[str, Any]:
            before = target.sample()
            run = self._drive(target, load, self.plan.seconds, tool=tool, requests=count)
            after = target.sample()
            if tool == "wrk":
                target.quiesce(run)
            return _run_record(run, before, after)

        runs = [one_run() for _ in range(self.plan.repeats)]
        self._replayable(name, target, lambda: None, lambda _: one_run(), runs)
        connections = self.plan.connections
        return self._record(
            scenario, name, target, load.transport, runs, connections, items_per_request, note
        )

    def measure_calls(
        self,
        scenario: str,
        name: str,
        target: Target,
        transport: str,
        *,
        prepare: Callable[[], Sequence[Any]],
        call: drivers.Call,
        connections: int | None = None,
        items_per_request: int = 1,
        calls_per_request: int = 1,
        repeats: int | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        """Python-driven calls with their own work items: each repeat (`plan.repeats` unless given)
        first runs `prepare()` (unmeasured, e.g. creating the exceptions to dispatch), then sends
        every item once."""
        if transport == "rest":
            factory: Callable[[], Any] = lambda: drivers.RestClient(target.base_url)  # noqa: E731
        else:
            assert target.grpc_target is not None
            factory = lambda: drivers.GrpcClient(target.grpc_target)  # noqa: E731

        connections = connections or self.plan.connections

        def one_run(items: Sequence[Any]) -> dict[str, Any]:
            before = target.sample()
            run = drivers.run_python(factory, call, connections=connections, items=items)
            return _run_record(run, before, target.sample())

        runs = [one_run(prepare()) for _ in range(repeats or self.plan.repeats)]
        self._replayable(name, target, prepare, one_run, runs)
        record = self._record(scenario, name, target, transport, runs, connections, items_per_request, note)
        record["calls_per_request"] = calls_per_request
        return record

    def measure_span(
        self,
        scenario: str,
        name: str,
        target: Target,
        transport: str,
        *,
        prepare: Callable[[], Any],
        run: Callable[[Any], LoadRun],
        connections: int = 1,
        repeats: int | None = None,
        unit: str = "",
        note: str = "",
    ) -> dict[str, Any]:
        """Work the server does on its own, e.g. a queue of deliveries draining: each repeat runs
        `prepare()` (unmeasured), then `run(prepared)`, which starts the work, waits for its end and
        returns a LoadRun (requests = work items done, seconds = wall time, latencies per item). The
        stack is sampled around run() as around any load: server CPU, statements, calls."""

        def one_run(prepared: Any) -> dict[str, Any]:
            before = target.sample()
            done = run(prepared)
            return _run_record(done, before, target.sample())

        runs = [one_run(prepare()) for _ in range(repeats or self.plan.repeats)]
        self._replayable(name, target, prepare, one_run, runs)
        record = self._record(scenario, name, target, transport, runs, connections, 1, note)
        if unit:
            record["unit"] = unit  # what one "request" of this row is (the report shows items/s)
        return record

    def _replayable(self, name: str, target: Target, prepare, run, runs: list[dict[str, Any]]) -> None:
        seconds = statistics.median(r["seconds"] or 0.0 for r in runs)
        self.replays[name] = Replay(target, prepare, run, seconds)

    def _record(
        self,
        scenario: str,
        name: str,
        target: Target,
        transport: str,
        runs: list[dict[str, Any]],
        connections: int,
        items_per_request: int,
        note: str,
    ) -> dict[str, Any]:
        record = {
            "scenario": scenario,
            "name": name,
            "stack": target.label,
            "transport": transport,
            "driver": runs[0]["driver"],
            "connections": connections,
            "items_per_request": items_per_request,
            "calls_per_request": 1,  # API calls one "request" makes (a round of 50 GETs: 50)
            **summarize(runs, items_per_request),
            "server_peak_rss_mb": peak_rss_mb(target.server_pids),
            "envoy_peak_rss_mb": peak_rss_mb([target.envoy_pid]),
            "note": note,
            "runs": runs,
        }
        self.measurements.append(record)
        s = record
        self.log(
            f"  {name:<44} {s['rps'] or 0:>9.1f} req/s  p50 {s['p50_ms'] or 0:>8.2f} ms  "
            f"p99 {s['p99_ms'] or 0:>8.2f} ms  cpu/req {1000 * (s['server_cpu_s_per_req'] or 0):.2f} ms"
            f"  [{s['driver']}]{'  ERRORS ' + str(s['errors']) if s['errors'] else ''}"
        )
        return record

    def find(self, name: str) -> dict[str, Any] | None:
        return next((m for m in self.measurements if m["name"] == name), None)

    # -- derived results --------------------------------------------------------------------------

    def derived(self, name: str, value: float, numerator: str, denominator: str, meaning: str) -> None:
        """A ratio computed by the scenario itself (both sides still from this run)."""
        if value == value and value not in (float("inf"), float("-inf")):
            self.ratios.append(
                {
                    "name": name,
                    "value": round(value, 3),
                    "numerator": numerator,
                    "denominator": denominator,
                    "meaning": meaning,
                }
            )

    def ratio(self, name: str, numerator: str, denominator: str, key: str, meaning: str) -> None:
        """measurements[numerator][key] / measurements[denominator][key], both from this run."""
        a, b = self.find(numerator), self.find(denominator)
        if a is None or b is None or not a.get(key) or not b.get(key):
            return
        self.ratios.append(
            {
                "name": name,
                "value": round(a[key] / b[key], 3),
                "numerator": f"{numerator}.{key}",
                "denominator": f"{denominator}.{key}",
                "meaning": meaning,
            }
        )

    def todo(self, scenario: str, what: str, why: str) -> None:
        """Something the scenario list should measure but cannot yet (never a stand-in number)."""
        self.todos.append({"scenario": scenario, "what": what, "why": why})
        self.log(f"  TODO {what}: {why}")

    def skip(self, scenario: str, what: str, why: str) -> None:
        """Left out of this run by its settings (e.g. replicas need PostgreSQL)."""
        self.skipped.append({"scenario": scenario, "what": what, "why": why})
        self.log(f"  skipped {what}: {why}")


# -- data -----------------------------------------------------------------------------------------


def create_exceptions(target: Target, count: int, prefix: str = "bench") -> list[str]:
    """`count` new exceptions through the API (POST /v1/exceptions/bulk/create, 1000 a call)."""
    ids: list[str] = []
    with target.client() as client:
        while len(ids) < count:
            n = min(1000, count - len(ids))
            body = {
                "exceptions": [
                    {"transaction_id": f"{prefix}-{len(ids) + i}", "amount": "1250.00", "currency": "USD"}
                    for i in range(n)
                ]
            }
            response = client.post("/v1/exceptions/bulk/create", json=body)
            if response.status_code != 200:
                raise RuntimeError(f"bulk create answered {response.status_code}: {response.text[:500]}")
            ids += [e["id"] for e in response.json()["exceptions"]]
    return ids
