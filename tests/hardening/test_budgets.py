"""Connection budgets through the real Envoy and server (envoy/README.md "Budgets").

- Thousands of short, non-keep-alive requests leave no descriptors behind in Envoy or the server: with
  a pool per client connection Envoy used to keep one upstream HTTP/2 connection per closed client
  connection for its 1 h idle timeout (500 curl calls: ~525 descriptors in each process).
- A client that sends its headers a byte at a time is cut off at the headers timeout, and other
  clients are served meanwhile.

Waits poll with generous bounds; nothing asserts how fast anything is.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from server.process.envoy import ConnectionBudget
from tests.support.databases import sqlite_database
from tests.support.stack import Stack

SHORT_REQUESTS = int(os.environ.get("BUDGET_SHORT_REQUESTS", "2000"))
HEADERS_TIMEOUT_SECONDS = 2.0
# Descriptors a process may gain for reasons of its own (log files, a pool connection, timers).
SLACK = 12


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            children = (task / "children").read_text().split()
            todo.extend(int(child) for child in children)
    return pids


def descriptors(pid: int) -> int:
    return sum(len(os.listdir(f"/proc/{p}/fd")) for p in process_tree(pid))


def envoy_stat(stack: Stack, name: str) -> int:
    text = httpx.get(f"http://127.0.0.1:{stack.admin_port}/stats", params={"filter": f"^{name}$"}).text
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    raise AssertionError(f"Envoy has no stat {name}: {text!r}")


def listener_stat(stack: Stack, suffix: str) -> int:
    """A per-listener counter (its name carries the listener's address), summed over listeners."""
    stats = f"http://127.0.0.1:{stack.admin_port}/stats"
    text = httpx.get(stats, params={"filter": f"^listener\\..*{suffix}$"}).text
    return sum(int(line.partition(": ")[2]) for line in text.splitlines() if line.strip())


def short_request(port: int) -> bytes:
    """One request on a fresh connection that closes after it (HTTP/1.1 `Connection: close`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: reconrouter\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def budget_stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("budgets")
    # The defaults except the headers timeout, shortened so the slow client test is short too.
    budget = ConnectionBudget(request_headers_timeout_seconds=HEADERS_TIMEOUT_SECONDS)
    with sqlite_database(work) as url, Stack(url, work_dir=work, budget=budget) as stack:
        yield stack


def settle(stack: Stack) -> tuple[int, int]:
    """Descriptors of Envoy and the server once a request has gone through and nothing is open."""
    assert httpx.get(f"{stack.base_url}/healthz").status_code == 200
    return descriptors(stack.envoy_process.pid), descriptors(stack.server_process.pid)


def test_descriptors_stay_flat_after_thousands_of_short_connections(budget_stack):
    stack = budget_stack
    envoy_before, server_before = settle(stack)
    for _ in range(SHORT_REQUESTS):
        answer = short_request(stack.http_port)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert envoy_stat(stack, "http.rest.downstream_cx_total") >= SHORT_REQUESTS

    # Upstream connections whose client is gone close after the upstream idle timeout (5 s); poll
    # far beyond it.
    deadline = time.monotonic() + 90
    while True:
        envoy_now, server_now = descriptors(stack.envoy_process.pid), descriptors(stack.server_process.pid)
        upstream = envoy_stat(stack, "cluster.grpc_backend.upstream_cx_active")
        flat = envoy_now <= envoy_before + SLACK and server_now <= server_before + SLACK and upstream <= 2
        if flat or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert flat, (
        f"after {SHORT_REQUESTS} short connections: Envoy {envoy_before} -> {envoy_now} descriptors, "
        f"server {server_before} -> {server_now}, {upstream} upstream connections still open"
    )
    # And the service still answers.
    assert short_request(stack.http_port).startswith(b"HTTP/1.1 200")


def test_a_client_sending_headers_slowly_is_cut_off_while_others_are_served(budget_stack):
    stack = budget_stack
    timeouts_before = envoy_stat(stack, "http.rest.downstream_rq_header_timeout")
    slow = socket.create_connection(("127.0.0.1", stack.http_port), timeout=1)
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: reconrouter\r\nX-Slow: ")
    answer = b""
    closed = False
    served_meanwhile = 0
    # One header byte every 0.25 s: the connection is never idle, only its headers never end. Without
    # a headers timeout this goes on for as long as the client likes; here at most 60 s (30x the limit).
    for _ in range(240):
        try:
            slow.sendall(b"a")
        except OSError:  # Reset by Envoy after it answered.
            closed = True
            break
        # Another client is served while the slow one holds its connection.
        if served_meanwhile < 3:
            assert httpx.get(f"{stack.base_url}/healthz").status_code == 200
            served_meanwhile += 1
        try:
            slow.settimeout(0.25)
            chunk = slow.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        answer += chunk
    slow.close()
    assert closed, "a client trickling its headers kept its connection"
    assert served_meanwhile == 3
    if answer:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert envoy_stat(stack, "http.rest.downstream_rq_header_timeout") == timeouts_before + 1


def test_idle_connections_cannot_hold_the_connection_cap(tmp_path):
    """Clients that open connections and send nothing fill the cap only until the idle timeout."""
    cap = 12
    budget = ConnectionBudget(max_connections=cap, downstream_idle_timeout_seconds=2.0)
    with sqlite_database(tmp_path) as url, Stack(url, work_dir=tmp_path, budget=budget) as stack:
        idle = [socket.create_connection(("127.0.0.1", stack.http_port), timeout=5) for _ in range(cap + 4)]
        try:
            # Beyond the cap Envoy closes new connections at once (the overload manager's monitor).
            assert envoy_stat(stack, "http.rest.downstream_cx_active") <= cap
            assert listener_stat(stack, "downstream_global_cx_overflow") >= 4
            # The idle ones are closed at the idle timeout; then everyone is served again.
            deadline = time.monotonic() + 60
            while True:
                try:
                    served = short_request(stack.http_port).startswith(b"HTTP/1.1 200")
                except OSError:
                    served = False
                if served or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert served
            closed = 0
            for sock in idle:
                sock.settimeout(5)
                try:
                    closed += sock.recv(1) == b""
                except OSError:
                    closed += 1
            assert closed == len(idle)
        finally:
            for sock in idle:
                sock.close()
