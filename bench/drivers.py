"""Load drivers: wrk (REST), h2load (gRPC) and a measured Python driver for what they cannot express.

Every driver runs one closed-loop load (a fixed number of connections, each sending its next
request as soon as the last one answered) and returns a `LoadRun`: how many requests finished, how
many failed, how long it took and the latency percentiles.

- wrk: `-t1 -c N -d S` (whole seconds, at least 1) with a generated Lua script that rotates over
  paths, can stamp a unique header value on each request (idempotency keys), and prints its summary
  as one JSON line.
- h2load: gRPC over HTTP/2 prior knowledge; the body is one gRPC length-prefixed message, headers
  `content-type: application/grpc` and `te: trailers`; per-request latencies come from --log-file.
  h2load sees only HTTP statuses (always 200 for gRPC), so gRPC failures are counted on the server
  side from its Prometheus counters (see harness.py). Measured runs send a fixed number of calls
  (sized from a timed warm-up) so that none is cut off in flight at the end.
- python: threads with one keep-alive connection (REST: http.client) or one channel (gRPC) each.
  It is the stand-in when a tool is missing and the only driver for calls whose requests must
  differ in their body (fresh exceptions per dispatch) or that chain several calls. Its own client
  cost (the GIL of the bench process) caps it well below wrk/h2load: compare its numbers with each
  other, not with a tool's.
"""

from __future__ import annotations

import http.client
import json
import math
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

# A request must finish within this long or it counts as failed (bounded loops, even when stuck).
REQUEST_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class RestLoad:
    """REST requests through Envoy: `paths` are sent in turn (one path: the same request each time)."""

    paths: tuple[str, ...]
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    # A header whose value is made unique per request (e.g. "Idempotency-Key"); None: none.
    unique_header: str | None = None

    transport = "rest"


@dataclass(frozen=True)
class GrpcLoad:
    """One gRPC unary call, sent straight to the server (the same serialized message each time)."""

    method: str  # "/package.Service/Method"
    message: bytes
    metadata: tuple[tuple[str, str], ...] = ()

    transport = "grpc"


Load = RestLoad | GrpcLoad


@dataclass
class LoadRun:
    driver: str
    requests: int  # finished, successful or not
    errors: int  # transport errors, timeouts and non-2xx statuses the client saw
    seconds: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    # When the driver reports percentiles itself (wrk) instead of raw latencies.
    reported: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, p: float) -> float:
        if f"p{p:g}" in self.reported:
            return self.reported[f"p{p:g}"]
        return percentile(self.latencies_ms, p)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def available_tools() -> dict[str, str | None]:
    return {"wrk": shutil.which("wrk"), "h2load": shutil.which("h2load")}


# -- wrk ------------------------------------------------------------------------------------------

_WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%.1f,"p99_us":%.1f,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def _lua_string(value: str | bytes) -> str:
    if isinstance(value, str):
        value = value.encode()
    return '"' + "".join(f"\\{b}" for b in value) + '"'  # decimal escapes: safe for any byte


def wrk_script(load: RestLoad) -> str:
    lines = [f"wrk.method = {_lua_string(load.method)}"]
    for name, value in load.headers:
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    if load.body is not None:
        lines.append(f"wrk.body = {_lua_string(load.body)}")
    lines.append("local paths = {" + ", ".join(_lua_string(p) for p in load.paths) + "}")
    lines.append(f"local prefix = {_lua_string(uuid.uuid4().hex)}")
    lines.append("local i = 0")
    lines.append("request = function()")
    lines.append("  i = i + 1")
    if load.unique_header:
        lines.append(f"  wrk.headers[{_lua_string(load.unique_header)}] = prefix .. '-' .. i")
    lines.append("  return wrk.format(nil, paths[(i % #paths) + 1])")
    lines.append("end")
    return "\n".join(lines) + "\n" + _WRK_DONE


def run_wrk(base_url: str, load: RestLoad, *, connections: int, seconds: float) -> LoadRun:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text(wrk_script(load))
        command = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, math.ceil(seconds))}s",
            f"--timeout={int(REQUEST_TIMEOUT_SECONDS)}s",
            "-s",
            str(script),
            base_url,
        ]
        out = _run(command, timeout=seconds + REQUEST_TIMEOUT_SECONDS + 30)
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out[-2000:]}")
    s = json.loads(line.removeprefix("BENCH_JSON "))
    errors = s["connect"] + s["read"] + s["write"] + s["status"] + s["timeout"]
    return LoadRun(
        "wrk",
        s["requests"],
        errors,
        s["duration_us"] / 1e6,
        reported={"p50": s["p50_us"] / 1000, "p99": s["p99_us"] / 1000, "mean": s["mean_us"] / 1000},
    )


# -- h2load ---------------------------------------------------------------------------------------


def grpc_frame(message: bytes) -> bytes:
    """The gRPC length-prefixed message: not compressed (0), 4-byte big-endian length, the bytes."""
    return struct.pack(">BI", 0, len(message)) + message


def run_h2load(
    grpc_target: str, load: GrpcLoad, *, connections: int, seconds: float, requests: int | None = None
) -> LoadRun:
    """For `seconds` (-D), or exactly `requests` calls (-n): a timed run stops with calls in
    flight, which the server then counts as failed, so measured runs use a count."""
    with tempfile.TemporaryDirectory(prefix="bench-h2load-") as tmp:
        data, log = Path(tmp) / "request.bin", Path(tmp) / "requests.tsv"
        data.write_bytes(grpc_frame(load.message))
        headers = [("content-type", "application/grpc"), ("te", "trailers"), *load.metadata]
        command = [
            "h2load",
            "-t1",
            f"-c{connections}",
            "-m1",
            f"-n{requests}" if requests else f"-D{max(100, round(seconds * 1000))}ms",
            "-d",
            str(data),
            f"--log-file={log}",
            *[arg for name, value in headers for arg in ("-H", f"{name}: {value}")],
            f"http://{grpc_target}{load.method}",
        ]
        out = _run(command, timeout=seconds + REQUEST_TIMEOUT_SECONDS + 30)
        rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    statuses = [int(r[1]) for r in rows]
    latencies = [int(r[2]) / 1000 for r in rows]
    starts = [int(r[0]) for r in rows]
    if not rows:
        raise RuntimeError(f"h2load finished no request:\n{out[-2000:]}")
    # The span from the first start to the last end: h2load's own "finished in" includes connecting.
    span = (max(s + int(r[2]) for s, r in zip(starts, rows, strict=True)) - min(starts)) / 1e6
    failed = _h2load_failed(out)
    return LoadRun(
        "h2load",
        len(rows),
        failed + sum(1 for s in statuses if not 200 <= s < 300),
        span,
        latencies,
    )


def _h2load_failed(out: str) -> int:
    # "requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout"
    for line in out.splitlines():
        if line.startswith("requests:"):
            parts = {p.split()[1]: int(p.split()[0]) for p in line.split(":", 1)[1].split(",")}
            return parts.get("errored", 0) + parts.get("timeout", 0)
    raise RuntimeError(f"h2load printed no request summary:\n{out[-2000:]}")


def _run(command: list[str], *, timeout: float) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


# -- the Python driver ----------------------------------------------------------------------------


class RestClient:
    """One keep-alive HTTP/1.1 connection (http.client: far less client CPU per call than httpx)."""

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self._conn = http.client.HTTPConnection(host, int(port), timeout=REQUEST_TIMEOUT_SECONDS)

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        if body is not None:
            headers = {"Content-Type": "application/json", **headers}
        self._conn.request(method, path, body=body, headers=headers)
        response = self._conn.getresponse()
        content = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, content

    def close(self) -> None:
        self._conn.close()


class GrpcClient:
    """One channel of its own (not shared through the global subchannel pool): one connection."""

    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        self._calls: dict[str, Any] = {}

    def call(self, method: str, message: bytes, metadata: Sequence[tuple[str, str]] = ()) -> bytes:
        stub = self._calls.get(method)
        if stub is None:
            stub = self._calls[method] = self._channel.unary_unary(method)  # bytes in, bytes out
        return stub(message, metadata=tuple(metadata), timeout=REQUEST_TIMEOUT_SECONDS)

    def close(self) -> None:
        self._channel.close()


# One call: takes the worker's client and the work item (None for duration-based loads); raises on
# failure.
Call = Callable[[Any, Any], None]


def run_python(
    make_client: Callable[[], Any],
    call: Call,
    *,
    connections: int,
    seconds: float | None = None,
    items: Sequence[Any] | None = None,
) -> LoadRun:
    """Closed loop on `connections` threads, for `seconds` or until every item was sent once."""
    if (seconds is None) == (items is None):
        raise ValueError("give seconds or items")
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    queue = list(reversed(items)) if items is not None else None
    clients = [make_client() for _ in range(connections)]
    start = time.perf_counter()
    deadline = start + seconds if seconds is not None else math.inf
    hard_stop = start + (seconds or 0) + 600  # bounded even when items never run out

    def work(client: Any) -> None:
        mine: list[float] = []
        while True:
            now = time.perf_counter()
            if now >= deadline or now >= hard_stop:
                break
            item = None
            if queue is not None:
                with lock:
                    if not queue:
                        break
                    item = queue.pop()
            t0 = time.perf_counter()
            try:
                call(client, item)
            except Exception:
                with lock:
                    errors[0] += 1
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for c in clients:
        c.close()
    return LoadRun("python", len(latencies), errors[0], elapsed, latencies)


def python_call_for(load: Load) -> tuple[Callable[[str, str | None], Callable[[], Any]], Call]:
    """(client factory given (base_url, grpc_target), call) that replay a RestLoad/GrpcLoad."""
    if isinstance(load, GrpcLoad):

        def grpc_call(client: GrpcClient, _item: Any) -> None:
            client.call(load.method, load.message, load.metadata)

        return (lambda _base, target: lambda: GrpcClient(target)), grpc_call
    counter = iter(range(1, 1 << 62))
    prefix = uuid.uuid4().hex

    def rest_call(client: RestClient, _item: Any) -> None:
        n = next(counter)
        headers = dict(load.headers)
        if load.unique_header:
            headers[load.unique_header] = f"{prefix}-{n}"
        status, _, body = client.request(load.method, load.paths[n % len(load.paths)], headers, load.body)
        if not 200 <= status < 300:
            raise RuntimeError(f"{status}: {body[:200]!r}")

    return (lambda base, _target: lambda: RestClient(base)), rest_call
