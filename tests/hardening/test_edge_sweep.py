"""Hypothesis sweep of edge values (enum numbers and names, timestamps, numbers, URLs) over REST
through Envoy, as `/v1/bulk` sub-requests and over gRPC: every answer is a refusal or a success,
never a 5xx (REST) or INTERNAL / UNKNOWN (gRPC). HYPOTHESIS_EXAMPLES (default 60 here) per sweep;
`make fuzz` raises it.

The shared stack allows private networks (tests/support/stack.py), so URLs are only checked for syntax
when a target is configured. The sweep with private networks off (where the address check resolves
the host) draws only hosts the resolver answers without DNS: IP literals and labels over 63
characters (refused by IDNA encoding before any lookup). Nothing is ever dispatched: no request
leaves the machine.
"""

from __future__ import annotations

import json
import os

import grpc
import httpx
import pytest
from google.protobuf import timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen.reconrouter.exceptions.v1 import exceptions_pb2, exceptions_pb2_grpc
from gen.reconrouter.targets.v1 import targets_pb2, targets_pb2_grpc
from tests.support.databases import sqlite_database
from tests.support.dispatch import Tenant, dispatch_stack

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SERVER_FAULTS = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.UNAVAILABLE,
}

INT32 = st.integers(-(2**31), 2**31 - 1)
ENUM_NUMBERS = st.one_of(st.sampled_from([-1, 0, 1, 2, 3, 4, 5, 99, 2**31 - 1, -(2**31)]), INT32)
ENUM_VALUES = st.one_of(
    ENUM_NUMBERS,
    st.sampled_from(["HIGH", "high", "SEVERITY_HIGH", "", " HIGH", "HIGH\n", "1", "1.0", "true", "null"]),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
TIMES = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "10000-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-12-31T23:59:60Z",
            "2024-01-01T00:00:00+14:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-23:59",
            "2024-01-01T00:00:00.1234567891Z",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00z",
            "\u0662\u0660\u0662\u0664-01-01T00:00:00Z",
            "",
        ]
    ),
    st.text(st.sampled_from("0123456789-:TZ.+ z"), max_size=30),
)
AMOUNTS = st.one_of(
    st.sampled_from(["0", "0.00", "1e3", "NaN", "Infinity", "-1", "1" * 19, "1.12345", "٣", "1_0", "0x10"]),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.text(st.sampled_from("0123456789.-+eE_ \n\u0663\uff11"), max_size=25),
)
LABELS = st.one_of(
    st.from_regex(r"[a-z0-9-]{1,70}", fullmatch=True),
    st.sampled_from(["127.1", "0x7f", "[::1]", "[fe80::1%25x]"]),
)
URLS = st.one_of(
    st.builds(
        lambda scheme, labels, port, path: f"{scheme}://{'.'.join(labels)}{port}{path}",
        st.sampled_from(["http", "https", "HTTPS", "ftp", "https:", ""]),
        st.lists(LABELS, min_size=1, max_size=5),
        st.one_of(
            st.just(""), st.integers(-5, 200000).map(lambda p: f":{p}"), st.sampled_from([":", ":x", ":+1"])
        ),
        st.text(st.sampled_from("/abc%zz?#\\@ \t\n"), max_size=12),
    ),
    st.text(max_size=60),
)


def no_server_fault(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    assert "Traceback" not in response.text


def no_server_fault_in_bulk(client: httpx.Client, request: dict) -> None:
    response = client.post("/v1/bulk", json={"requests": [request]})
    no_server_fault(response)
    if response.status_code == 200:
        [item] = response.json()
        assert item["status"] < 500, item


def grpc_outcome(call) -> None:
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() not in SERVER_FAULTS, (err.code(), err.details())


@SETTINGS
@given(severity=ENUM_VALUES, occurred_at=TIMES, due_at=TIMES, amount=AMOUNTS)
def test_create_exception_edges(client, channel, token, severity, occurred_at, due_at, amount):
    body = {
        "transaction_id": "sweep",
        "severity": severity,
        "occurred_at": occurred_at,
        "due_at": due_at,
        "amount": amount,
        "currency": "USD",
    }
    try:
        json.dumps(body, allow_nan=False)
        encoded = json.dumps(body)
    except ValueError:
        encoded = json.dumps(body)  # NaN / Infinity as JSON tokens: what a sloppy client sends
    json_type = {"content-type": "application/json"}
    no_server_fault(client.post("/v1/exceptions", content=encoded, headers=json_type))
    no_server_fault_in_bulk(client, {"url": "/v1/exceptions", "method": "POST", "data": encoded})


@SETTINGS
@given(
    severity=ENUM_NUMBERS,
    seconds=st.integers(-(2**63), 2**63 - 1),
    nanos=INT32,
    amount=AMOUNTS,
)
def test_create_exception_edges_over_grpc(channel, token, severity, seconds, nanos, amount):
    stub = exceptions_pb2_grpc.ExceptionsServiceStub(channel)
    request = exceptions_pb2.CreateExceptionRequest(
        transaction_id="sweep",
        severity=severity,
        due_at=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos),
        amount=amount,
        currency="USD",
    )
    metadata = [("authorization", f"Bearer {token}")]
    grpc_outcome(lambda: stub.CreateException(request, metadata=metadata, timeout=30))


@SETTINGS
@given(
    status=ENUM_VALUES.map(str),
    severity=ENUM_VALUES.map(str),
    date_from=TIMES,
    limit=st.one_of(st.integers(-(2**40), 2**40).map(str), st.sampled_from(["", "1.5", "1e2", "٣", " 5"])),
)
def test_list_query_edges(client, status, severity, date_from, limit):
    query = {"status": status, "severity": severity, "date_from": date_from, "limit": limit}
    no_server_fault(client.get("/v1/exceptions", params=query))
    no_server_fault_in_bulk(client, {"url": "/v1/exceptions?" + httpx.QueryParams(query).__str__()})


@SETTINGS
@given(url=URLS)
def test_target_url_edges(client, channel, token, url):
    body = {"url": url}
    no_server_fault(client.put("/v1/targets/WEBHOOK", json=body))
    jira = {"base_url": url, "api_token": "t"}
    no_server_fault_in_bulk(client, {"url": "/v1/targets/JIRA", "method": "PUT", "data": jira})
    stub = targets_pb2_grpc.TargetsServiceStub(channel)
    request = targets_pb2.PutTargetRequest(
        target_system="SERVICENOW", instance_url=url, username="u", password="p"
    )
    metadata = [("authorization", f"Bearer {token}")]
    grpc_outcome(lambda: stub.PutTarget(request, metadata=metadata, timeout=30))


# Hosts getaddrinfo answers without asking DNS: literals, and names IDNA refuses (a label over 63).
OFFLINE_HOSTS = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
    st.from_regex(r"[a-z]{64,80}(\.[a-z]{64,70})?", fullmatch=True),
)
OFFLINE_URLS = st.builds(
    lambda host, port, path: f"https://{host}{port}{path}",
    OFFLINE_HOSTS,
    st.one_of(
        st.just(""), st.integers(-5, 200000).map(lambda p: f":{p}"), st.sampled_from([":x", ":+1", ":1:2"])
    ),
    st.sampled_from(["", "/", "/hook", "/a%zz"]),
)


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    work = tmp_path_factory.mktemp("edge-strict")
    with (
        sqlite_database(work) as url,
        dispatch_stack(url, work, DISPATCH_ALLOW_PRIVATE_NETWORKS="false") as stack,
    ):
        tenant = Tenant(stack)
        yield tenant
        tenant.close()


@SETTINGS
@given(url=OFFLINE_URLS)
def test_target_url_edges_with_private_networks_off(strict, url):
    # An invalid port or an over-long label was a 500 here (the address check read them).
    no_server_fault(strict.http.put("/v1/targets/WEBHOOK", json={"url": url}))
    jira = {"base_url": url, "api_token": "t"}
    no_server_fault_in_bulk(strict.http, {"url": "/v1/targets/JIRA", "method": "PUT", "data": jira})
