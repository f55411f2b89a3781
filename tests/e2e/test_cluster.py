"""Replicas behind one Envoy on the machine's PostgreSQL: spread, drain, crash, shared limits."""

import os
import signal
import threading
import time
import uuid

import httpx
import pytest

from tests.support.cluster import Cluster
from tests.support.databases import ENV_VAR, fresh_postgres_url

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get(ENV_VAR), reason=f"{ENV_VAR} is not set"),
]
SCOPES = ["exceptions:read", "exceptions:write", "exceptions:dispatch"]


@pytest.fixture
def cluster(tmp_path, request):
    env = getattr(request, "param", {})
    with fresh_postgres_url(os.environ[ENV_VAR]) as url, Cluster(url, 2, env, work_dir=tmp_path) as running:
        yield running


def served_by(replica) -> int:
    return sum(1 for line in replica.logs().splitlines() if '"msg": "call"' in line)


def wait_for(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


class Stream:
    """Steady calls from one thread until stopped; records every outcome."""

    def __init__(self, cluster, token, kind):
        self.client = httpx.Client(
            base_url=cluster.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.kind = kind
        self.results: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _call(self):
        if self.kind == "read":
            return self.client.get("/v1/exceptions", params={"limit": 1})
        headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"} if self.kind == "keyed-write" else {}
        return self.client.post("/v1/exceptions", json={"transaction_id": "stream"}, headers=headers)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.results.append((self.kind, self._call().status_code))
            except httpx.HTTPError as exc:
                self.results.append((self.kind, type(exc).__name__))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)
        self.client.close()

    @property
    def failures(self):
        return [r for r in self.results if r[1] != 200]


def test_load_spreads_over_both_replicas(cluster):
    token = cluster.create_token("spread", SCOPES)
    with httpx.Client(base_url=cluster.base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        for _ in range(60):
            assert client.get("/v1/exceptions").status_code == 200
    counts = [served_by(r) for r in cluster.replicas]
    assert all(c > 0 for c in counts), counts


def test_a_draining_replica_fails_no_call(cluster):
    token = cluster.create_token("drain", SCOPES)
    wait_for(lambda: cluster.healthy_upstreams() == 2)
    with Stream(cluster, token, "read") as reads, Stream(cluster, token, "write") as writes:
        time.sleep(1)
        draining = cluster.replicas[0]
        draining.server_process.send_signal(signal.SIGTERM)
        assert draining.server_process.wait(timeout=30) == 0
        time.sleep(1)
    assert reads.results and writes.results
    assert reads.failures == [] and writes.failures == []
    assert '"msg": "draining"' in draining.logs()


def test_a_killed_replica_fails_only_calls_that_could_not_be_retried(cluster):
    token = cluster.create_token("kill", SCOPES)
    wait_for(lambda: cluster.healthy_upstreams() == 2)
    streams = [Stream(cluster, token, kind) for kind in ("read", "keyed-write", "write")]
    for stream in streams:
        stream.__enter__()
    try:
        time.sleep(1)
        cluster.replicas[1].server_process.send_signal(signal.SIGKILL)
        cluster.replicas[1].server_process.wait(timeout=10)
        time.sleep(2)
    finally:
        for stream in streams:
            stream.__exit__()
    reads, keyed, plain = streams
    assert all(s.results for s in streams)
    # A read in flight on the dead replica is retried on the survivor, unless the replica had begun
    # to answer (it sends headers before the body): then Envoy cannot retry, and that one read is a
    # 503. Seen about once in ten runs; never more than the one call being answered at the kill.
    assert [status for _, status in reads.failures] in ([], [503]), reads.failures
    # A keyed write in flight on the dead replica is retried by Envoy; the survivor sees the dead
    # call's claim and answers 409 IDEMPOTENCY_KEY_IN_USE until the lock times out: correct, at most one.
    assert [status for _, status in keyed.failures] in ([], [409]), keyed.failures
    # A plain write in flight when its replica died is not retried (it may have run): at most one.
    assert len(plain.failures) <= 1, plain.failures
    # Afterwards everything goes to the survivor.
    with httpx.Client(base_url=cluster.base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        assert all(client.get("/v1/exceptions").status_code == 200 for _ in range(10))


@pytest.mark.parametrize("cluster", [{"RATE_LIMIT_DISPATCH_PER_MINUTE": "5"}], indirect=True)
def test_rate_limits_count_calls_on_every_replica(cluster):
    token = cluster.create_token("limits", SCOPES)
    with httpx.Client(base_url=cluster.base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        eid = client.post("/v1/exceptions", json={"transaction_id": "rl"}).json()["id"]
        statuses = [
            client.post(f"/v1/exceptions/{eid}/dispatch", json={"target_system": "MANUAL"}).status_code
            for _ in range(8)
        ]
    assert statuses == [200] * 5 + [429] * 3
    assert all(served_by(r) > 0 for r in cluster.replicas), "the calls did not reach both replicas"


def test_metrics_move_on_every_replica(cluster):
    token = cluster.create_token("metrics", SCOPES)
    with httpx.Client(base_url=cluster.base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        for _ in range(30):
            client.get("/v1/exceptions")
    for replica in cluster.replicas:
        text = httpx.get(f"http://127.0.0.1:{replica.metrics_port}/metrics").text
        calls = [
            line
            for line in text.splitlines()
            if line.startswith('reconrouter_rpc_calls_total{code="OK",rpc="ListExceptions"}')
        ]
        assert calls and float(calls[0].rsplit(" ", 1)[1]) > 0, text[:500]
        assert "reconrouter_db_pool_checked_out" in text
