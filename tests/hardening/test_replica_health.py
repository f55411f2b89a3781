"""Two replicas behind one Envoy: application answers never eject a replica, a dead one is ejected.

Envoy reads a gRPC status as an HTTP code for outlier detection (INTERNAL is 500, UNAVAILABLE 503),
and counts resets and timeouts against the replica. Before envoy/README.md "Replica health", a few
error answers, or a handful of direct gRPC calls a caller sent without `te: trailers` or with an empty
body, took a healthy replica out of rotation.
"""

from __future__ import annotations

import os
import signal

import grpc
import httpx
import pytest

from gen.reconrouter.exceptions.v1 import exceptions_pb2, exceptions_pb2_grpc
from tests.support.cluster import Cluster
from tests.support.databases import ENV_VAR, database_urls

# The first database available: PostgreSQL when TEST_DATABASE_URL is set (CI), else SQLite.
ONE_DATABASE = database_urls()[-1] if os.environ.get(ENV_VAR) else database_urls()[0]
GRPC_PATH = "/reconrouter.exceptions.v1.ExceptionsService/ListExceptions"
# An empty ListExceptionsRequest as one length-prefixed gRPC message.
EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"


def outlier_stats(cluster: Cluster) -> dict[str, int]:
    text = httpx.get(
        f"http://127.0.0.1:{cluster.admin_port}/stats", params={"filter": "grpc_backend.outlier_detection"}
    ).text
    stats = {}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        stats[key.rsplit(".", 1)[-1]] = int(value)
    return stats


@pytest.fixture(params=[ONE_DATABASE])
def cluster(request, tmp_path):
    # Health checks rarely, so that only outlier detection can take a replica out in these tests.
    with (
        request.param(tmp_path) as url,
        Cluster(url, 2, work_dir=tmp_path, health_check_interval_seconds=60) as running,
    ):
        yield running


def test_application_errors_do_not_eject_a_replica(cluster):
    grpc_url = f"{cluster.base_url}{GRPC_PATH}"
    grpc_headers = {"content-type": "application/grpc"}
    with httpx.Client(timeout=30) as http:
        for _ in range(12):
            # REST without a token: 401.
            assert http.get(f"{cluster.base_url}/v1/exceptions").status_code == 401
            # Direct gRPC over HTTP/1.1 without `te: trailers` and without a body (the server reset
            # the stream, or waited for the route timeout): INVALID_ARGUMENT from Envoy.
            empty = http.post(grpc_url, headers=grpc_headers, content=b"")
            assert empty.headers.get("grpc-status") == "3", empty.headers
            # A cut-short message.
            cut = http.post(grpc_url, headers=grpc_headers, content=b"\x00\x00\x00\x00\x10abc")
            assert cut.headers.get("grpc-status") == "3", cut.headers
            # A whole message without a token: UNAUTHENTICATED from the server.
            unauthenticated = http.post(grpc_url, headers=grpc_headers, content=EMPTY_MESSAGE)
            assert unauthenticated.headers.get("grpc-status") == "16", unauthenticated.headers
            # A header name gRPC metadata cannot have (the server used to reset the stream).
            odd = http.post(grpc_url, headers={**grpc_headers, "x!y": "1"}, content=EMPTY_MESSAGE)
            assert odd.headers.get("grpc-status") == "16", odd.headers
        # INTERNAL from the server's gRPC core (a 500 to outlier detection), many in a row.
        for _ in range(12):
            bad_timeout = {**grpc_headers, "grpc-timeout": "x"}
            internal = http.post(grpc_url, headers=bad_timeout, content=EMPTY_MESSAGE)
            assert internal.headers.get("grpc-status") == "13", internal.headers

    stats = outlier_stats(cluster)
    # Envoy saw the 5xx-class answers (detection runs), but nothing was ejected.
    assert stats["ejections_detected_consecutive_5xx"] >= 1, stats
    assert stats["ejections_enforced_total"] == 0, stats
    assert stats["ejections_active"] == 0, stats
    assert stats["ejections_detected_consecutive_local_origin_failure"] == 0, stats
    assert cluster.healthy_upstreams() == 2

    # A well-formed gRPC call through Envoy (grpc's own client, HTTP/2) is untouched by the checks.
    token = cluster.create_token("replica-health", ["exceptions:read"])
    with grpc.insecure_channel(f"127.0.0.1:{cluster.http_port}") as channel:
        stub = exceptions_pb2_grpc.ExceptionsServiceStub(channel)
        metadata = [("authorization", f"Bearer {token}")]
        answer = stub.ListExceptions(exceptions_pb2.ListExceptionsRequest(), metadata=metadata, timeout=30)
    assert list(answer.items) == [] and not answer.has_more


def test_a_replica_that_is_gone_is_ejected_and_callers_do_not_notice(cluster):
    victim = cluster.replicas[1].server_process
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    answers = []
    with httpx.Client(timeout=30) as http:
        for _ in range(40):
            # A new connection each time, so each call picks a replica afresh.
            answer = http.get(f"{cluster.base_url}/healthz", headers={"connection": "close"})
            answers.append(answer.status_code)
    # Connect failures are retried on the other replica (GET routes and connect failures always).
    assert answers == [200] * 40
    stats = outlier_stats(cluster)
    assert stats["ejections_enforced_consecutive_local_origin_failure"] >= 1, stats
    assert cluster.healthy_upstreams() == 1
