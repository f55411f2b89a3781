"""A /v1/bulk sub-request answers what the same call made directly through Envoy answers: status,
JSON body and headers, for success and for each error class (server-made and Envoy-made)."""

import json
import uuid

import httpx
import pytest

from tests.support.lenient_bodies import REFUSED
from tests.support.stack import free_port

# Headers every Envoy response has that describe the transport, not the call.
TRANSPORT = {"date", "server", "content-length", "connection"}


def normalized(body):
    """The body with per-call request ids blanked (each call has its own)."""
    if isinstance(body, dict):
        return {k: ("<request-id>" if k == "request_id" else normalized(v)) for k, v in body.items()}
    if isinstance(body, list):
        return [normalized(v) for v in body]
    return body


def direct_and_bulk(api: httpx.Client, method: str, url: str, json=None, headers=None):
    direct = api.request(method, url, json=json, headers=headers)
    item = {"url": url, "method": method}
    if json is not None:
        item["data"] = json
    if headers:
        item["headers"] = headers
    batch = api.post("/v1/bulk", json={"requests": [item]})
    assert batch.status_code == 200, batch.text
    (result,) = batch.json()
    return direct, result


def assert_same(direct: httpx.Response, result: dict, *, exact_body: bool = True) -> None:
    assert result["status"] == direct.status_code, (result, direct.text)
    if exact_body:
        assert normalized(result["contents"]) == normalized(direct.json())
        # Same JSON text too: key order and number formatting, not only equal values.
        assert list(result["contents"]) == list(direct.json())
    headers = {k: v for k, v in direct.headers.items() if k not in TRANSPORT}
    assert set(result["headers"]) == set(headers), (result["headers"], headers)
    for name, value in headers.items():
        if name != "x-request-id":
            assert result["headers"][name] == value, name


@pytest.fixture(scope="module")
def seeded(api):
    """Two exceptions of this tenant, one resolved, one dispatched (history with several entries)."""
    first = api.post(
        "/v1/exceptions", json={"transaction_id": "parity-1", "amount": "12.5", "currency": "EUR"}
    )
    second = api.post("/v1/exceptions", json={"transaction_id": "parity-2", "metadata": {"k": "v"}})
    ids = [first.json()["id"], second.json()["id"]]
    api.post(f"/v1/exceptions/{ids[1]}/dispatch", json={"target_system": "MANUAL", "queue": "Q"})
    api.post("/v1/exceptions/bulk/resolve", json={"exception_ids": ids[:1], "resolution": "done"})
    return ids


SUCCESS = [
    ("GET", "/v1/exceptions/{0}", None),
    ("GET", "/v1/exceptions/{1}/history", None),
    ("GET", "/v1/exceptions?status=RESOLVED&limit=1&sortBy=id", None),
    ("GET", "/v1/exceptions?external_system=manual&limit=200", None),
    ("POST", "/v1/exceptions/bulk/assign", {"exceptionIds": ["{1}", "{0}", "{1}"], "assignee": "ann"}),
    ("POST", "/v1/exceptions/{1}/dispatch", {"target_system": "MANUAL", "queue": "Q"}),
    ("GET", "/v1/targets", None),
    ("GET", "/healthz", None),
]


def fill(value, ids):
    if isinstance(value, str):
        return value.format(*ids)
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


@pytest.mark.parametrize(("method", "url", "body"), SUCCESS, ids=[f"{m} {u}" for m, u, _ in SUCCESS])
def test_success_is_the_same(api, seeded, method, url, body):
    direct, result = direct_and_bulk(api, method, fill(url, seeded), fill(body, seeded))
    assert direct.status_code == 200, direct.text
    assert_same(direct, result)


def test_a_scheduled_dispatch_is_202_in_both(api_for):
    """A single dispatch whose delivery is being retried answers 202 (API.md §7; Envoy's Lua filter
    turns the server's x-http-status into the status); as a /v1/bulk sub-request it is 202 too."""
    api = api_for("parity-scheduled")
    port = free_port()  # nothing listens there: every attempt is refused and retried later
    put = api.put("/v1/targets/WEBHOOK", json={"url": f"http://127.0.0.1:{port}/hook"})
    assert put.status_code == 200, put.text
    eid = api.post("/v1/exceptions", json={"transaction_id": "parity-202"}).json()["id"]
    url = f"/v1/exceptions/{eid}/dispatch"
    direct, result = direct_and_bulk(api, "POST", url, {"target_system": "WEBHOOK"})
    assert direct.status_code == 202 and direct.json()["acknowledged"] is False, direct.text
    assert_same(direct, result, exact_body=False)
    # The sub-request joined the same delivery; only its next attempt may have moved meanwhile.
    volatile = {"next_attempt_at"}
    assert list(result["contents"]) == list(direct.json())
    assert {k: v for k, v in result["contents"].items() if k not in volatile} == {
        k: v for k, v in direct.json().items() if k not in volatile
    }
    api.post(f"/v1/deliveries/{direct.json()['delivery_id']}/cancel")  # stop retrying (best effort)


def test_a_create_is_the_same_but_for_its_id_and_times(api):
    body = {"transaction_id": "parity-create", "amount": "100000", "currency": "USD", "severity": "LOW"}
    direct, result = direct_and_bulk(api, "POST", "/v1/exceptions", body)
    assert_same(direct, result, exact_body=False)
    # due_at follows occurred_at (the SLA tier, API.md §8).
    volatile = {"id", "created_at", "updated_at", "occurred_at", "due_at"}
    assert list(result["contents"]) == list(direct.json())
    assert {k: v for k, v in result["contents"].items() if k not in volatile} == {
        k: v for k, v in direct.json().items() if k not in volatile
    }


MISSING = str(uuid.UUID(int=12345))
ERRORS = [
    # Server-made: validation, not found, business rule, missing scope.
    ("400 validation", "GET", "/v1/exceptions/not-a-uuid", None, None),
    ("400 limit", "GET", "/v1/exceptions?limit=500", None, None),
    ("400 body rule", "POST", "/v1/exceptions", {"transaction_id": ""}, None),
    ("404", "GET", f"/v1/exceptions/{MISSING}", None, None),
    ("404 history", "GET", f"/v1/exceptions/{MISSING}/history", None, None),
    ("422 state", "POST", "/v1/exceptions/{0}/dispatch", {"target_system": "MANUAL"}, None),
    (
        "422 target",
        "POST",
        "/v1/exceptions/bulk/dispatch",
        {"exception_ids": ["{1}"], "target_system": "JIRA"},
        None,
    ),
    (
        "400 idempotency key",
        "POST",
        "/v1/exceptions",
        {"transaction_id": "k"},
        {"Idempotency-Key": "bad key!"},
    ),
    ("400 callback key required", "POST", "/v1/exceptions/{1}/callback", {"external_system": "X"}, None),
]


@pytest.mark.parametrize(("name", "method", "url", "body", "headers"), ERRORS, ids=[e[0] for e in ERRORS])
def test_server_errors_are_the_same(api, seeded, name, method, url, body, headers):
    direct, result = direct_and_bulk(api, method, fill(url, seeded), fill(body, seeded), headers)
    assert direct.status_code >= 400, direct.text
    assert_same(direct, result)


def test_missing_scope_is_the_same_403(api_for, seeded):
    reader = api_for("acme", ("exceptions:read",))
    direct, result = direct_and_bulk(
        reader, "POST", "/v1/exceptions/bulk/assign", {"exception_ids": seeded, "assignee": "x"}
    )
    assert direct.status_code == 403
    assert_same(direct, result)


ENVOY_ERRORS = [
    ("bad query value", "GET", "/v1/exceptions?limit=abc", None),
    ("bad enum", "GET", "/v1/exceptions?status=open", None),
    ("unknown query parameter", "GET", "/v1/exceptions?bogus=1", None),
    ("unknown query parameter on a POST", "POST", "/v1/exceptions?bogus=1", {"transaction_id": "x"}),
]


@pytest.mark.parametrize(("name", "method", "url", "body"), ENVOY_ERRORS, ids=[e[0] for e in ENVOY_ERRORS])
def test_envoys_own_400s_are_the_same(api, name, method, url, body):
    direct, result = direct_and_bulk(api, method, url, body)
    assert direct.status_code == 400
    assert_same(direct, result)


# /v1/bulk cannot be a sub-request: its own body is Envoy's alone.
SUB_REQUESTS = [r for r in REFUSED if r[1] != "/v1/bulk"]


@pytest.mark.parametrize(
    ("method", "url", "body", "field", "message"), SUB_REQUESTS, ids=[r[3] for r in SUB_REQUESTS]
)
def test_json_the_transcoder_would_read_as_nothing_is_the_same_400(api, method, url, body, field, message):
    """Envoy's Lua filter and /v1/bulk refuse it with the same message and field
    (server/contract/json_rules.py)."""
    direct, result = direct_and_bulk(api, method, url, json.loads(body))
    assert direct.status_code == 400, direct.text
    assert direct.json()["message"] == f"{field}: {message}"
    assert_same(direct, result)


def test_a_body_of_the_wrong_type_is_a_400_of_the_same_shape(api):
    # Envoy's wording for type errors comes from its C++ JSON parser; the status, code and reason
    # are the same, the sentence is Python's (docs/bulk.md).
    direct, result = direct_and_bulk(api, "POST", "/v1/exceptions", {"transaction_id": 5})
    assert (direct.status_code, result["status"]) == (400, 400)
    assert result["contents"]["code"] == direct.json()["code"] == 3
    assert normalized(result["contents"]["details"]) == normalized(direct.json()["details"])
    assert "transaction_id" in result["contents"]["message"]
