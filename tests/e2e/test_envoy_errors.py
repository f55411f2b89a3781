"""Errors Envoy produces itself (before any server code runs) carry the server's details: ErrorInfo,
RequestInfo with the request id, BadRequest naming the field where Envoy's message names one; a
known path called with the wrong method is 405 with `Allow` (envoy/envoy.yaml.tmpl, Lua filter)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from server.contract.methods import load_methods
from server.contract.routes import HTTP_METHODS, RouteTable
from tests.support.lenient_bodies import ACCEPTED, REFUSED


def _details(response: httpx.Response) -> dict[str, dict]:
    body = response.json()
    return {detail["@type"].rsplit(".", 1)[-1]: detail for detail in body["details"]}


def _field_violations(details: dict[str, dict]) -> list[str]:
    return [v["field"] for v in details.get("BadRequest", {}).get("field_violations", [])]


BAD = "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "reason", "field"),
    [
        ("POST", "/v1/exceptions", b'{"transaction_id": ', 400, "INVALID_ARGUMENT", None),
        ("POST", "/v1/exceptions", b"\xff\xfe", 400, "INVALID_ARGUMENT", None),
        ("POST", "/v1/exceptions", b'{"transaction_id": 12}', 400, BAD, "transaction_id"),
        ("POST", "/v1/exceptions", b'{"transaction_id": "t", "severity": "NOPE"}', 400, BAD, "severity"),
        ("POST", "/v1/exceptions", b'{"transaction_id": "t", "metadata": [1]}', 400, BAD, "metadata"),
        ("POST", "/v1/exceptions", b'{"transaction_id": "t", "amount": {"a": 1}}', 400, BAD, "amount"),
        ("GET", "/v1/exceptions?colour=blue", None, 400, "INVALID_ARGUMENT", "colour"),
        ("GET", "/v1/exceptions?limit=abc", None, 400, "INVALID_ARGUMENT", "limit"),
        ("GET", "/v1/exceptions?status=NOPE", None, 400, "INVALID_ARGUMENT", "status"),
        ("GET", "/v1/no-such-route", None, 404, "NOT_FOUND", None),
        ("DELETE", "/v1/exceptions", None, 405, "METHOD_NOT_ALLOWED", None),
        (
            "POST",
            "/v1/exceptions",
            b'{"transaction_id": "' + b"x" * (4 * 1024 * 1024 + 10) + b'"}',
            413,
            "PAYLOAD_TOO_LARGE",
            None,
        ),
    ],
)
def test_envoy_errors_carry_error_info_request_info_and_the_field(
    api, method, path, content, status, reason, field
):
    request_id = f"envoy-error-{uuid.uuid4()}"
    response = api.request(
        method,
        path,
        content=content,
        headers={"Content-Type": "application/json", "X-Request-Id": request_id},
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"] == request_id
    assert "x-reconrouter-local-reply" not in response.headers
    details = _details(response)
    assert details["ErrorInfo"]["reason"] == reason
    assert details["ErrorInfo"]["domain"] == "reconrouter"
    assert details["RequestInfo"]["request_id"] == request_id
    assert _field_violations(details) == ([field] if field else []), response.text
    # The same order as the server's errors: ErrorInfo, BadRequest, RequestInfo.
    order = [d["@type"].rsplit(".", 1)[-1] for d in response.json()["details"]]
    assert order == [k for k in ("ErrorInfo", "BadRequest", "RequestInfo") if k in order]


def test_a_generated_request_id_is_the_one_in_the_body(api):
    response = api.get("/v1/exceptions", params={"colour": "blue"})
    assert response.status_code == 400
    generated = response.headers["x-request-id"]
    uuid.UUID(generated)
    assert _details(response)["RequestInfo"]["request_id"] == generated


def test_the_field_violation_matches_what_the_server_says_for_its_own_validation(api):
    """A field the server rejects and one Envoy rejects look alike to a client."""
    server = api.get("/v1/exceptions", params={"limit": "5000"})
    envoy = api.get("/v1/exceptions", params={"limit": "many"})
    assert server.status_code == envoy.status_code == 400
    assert _field_violations(_details(server)) == _field_violations(_details(envoy)) == ["limit"]
    assert set(_details(server)) == set(_details(envoy))


def _concrete(segments: tuple[str, ...]) -> str:
    return "/" + "/".join(str(uuid.uuid4()) if s in ("*", "**") else s for s in segments)


def test_every_known_path_answers_405_with_allow_for_each_method_it_lacks(api):
    """Generated from the contract: for every REST template, every other method is 405 and Allow
    lists exactly the methods the route table resolves for that path."""
    table = RouteTable(load_methods())
    checked = 0
    for route in table.routes:
        path = _concrete(route.segments)
        bound = table.methods_for(path)
        for method in HTTP_METHODS:
            if method in bound:
                continue
            response = api.request(method, path, headers={"Content-Type": "application/json"})
            assert response.status_code == 405, (method, path, response.text)
            assert response.headers["allow"] == ", ".join(sorted(bound)), (method, path)
            details = _details(response)
            assert details["ErrorInfo"]["reason"] == "METHOD_NOT_ALLOWED"
            assert details["RequestInfo"]["request_id"] == response.headers["x-request-id"]
            checked += 1
    assert checked > 50


def test_a_bound_method_still_reaches_the_server_and_an_unknown_path_is_404(api):
    assert api.get("/v1/exceptions").status_code == 200
    # A trailing slash and doubled slashes name the same route.
    assert api.request("DELETE", "/v1//exceptions/").status_code == 405
    assert api.request("DELETE", "/v1/exceptions/a/b/c/d").status_code == 404


def test_a_literal_path_that_is_also_a_variables_value_allows_only_its_own_methods(api_for):
    """POST /v1/routing-rules/evaluate is also a value of /v1/routing-rules/{rule_id} (GET, PUT,
    DELETE): the most specific template counts, so the others are 405 with `Allow: POST` (Envoy's
    transcoder alone would read GET as GetRoutingRule("evaluate")); a rule id still reaches them."""
    api = api_for(f"literal-{uuid.uuid4().hex[:8]}")
    rule = api.post(
        "/v1/routing-rules",
        json={
            "name": "literal",
            "priority": 1,
            "conditions": {"severities": ["HIGH"]},
            "action": {"target_system": "MANUAL", "queue": "q"},
        },
    )
    assert rule.status_code == 200, rule.text
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        response = api.request(
            method, "/v1/routing-rules/evaluate", content=b"{}", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 405, (method, response.text)
        assert response.headers["allow"] == "POST", method
        assert _details(response)["ErrorInfo"]["reason"] == "METHOD_NOT_ALLOWED"
    evaluated = api.post("/v1/routing-rules/evaluate", json={"exception_id": str(uuid.uuid4())})
    assert evaluated.status_code == 404, evaluated.text  # reached the server: no such exception
    got = api.get(f"/v1/routing-rules/{rule.json()['id']}")
    assert got.status_code == 200 and got.json()["id"] == rule.json()["id"], got.text
    assert (
        api.request("PATCH", f"/v1/routing-rules/{rule.json()['id']}").headers["allow"] == "DELETE, GET, PUT"
    )
    assert api.delete(f"/v1/routing-rules/{rule.json()['id']}").status_code == 200


def test_bulk_sub_requests_allow_the_same_methods_there(api):
    """/v1/bulk resolves its sub-requests with the same rule (server/contract/routes.py): a literal
    url is refused when the batch is read (nothing runs); one a reference makes into
    /v1/routing-rules/evaluate answers Envoy's 405 with `Allow: POST`."""
    planned = api.post(
        "/v1/bulk", json={"requests": [{"url": "/v1/routing-rules/evaluate", "method": "GET"}]}
    )
    assert planned.status_code == 400, planned.text
    assert "no route for GET /v1/routing-rules/evaluate (it allows POST)" in planned.text
    results = api.post(
        "/v1/bulk",
        json={
            "requests": [
                {
                    "id": "e",
                    "url": "/v1/exceptions",
                    "method": "POST",
                    "data": {"transaction_id": "evaluate"},
                },
                {"url": "/v1/routing-rules/@{e.transaction_id}", "method": "GET"},
                {"url": "/v1/routing-rules/@{e.id}", "method": "GET"},
            ]
        },
    )
    assert results.status_code == 200, results.text
    created, refused, other = results.json()
    assert created["status"] == 200
    assert refused["status"] == 405, refused
    assert refused["headers"]["allow"] == "POST"
    direct = api.get("/v1/routing-rules/evaluate")
    assert (direct.status_code, direct.headers["allow"]) == (405, "POST")
    assert refused["contents"]["code"] == direct.json()["code"]
    # Any other value is still a rule id (there is no rule with an exception's id).
    assert other["status"] == 404, other


@pytest.mark.parametrize(("method", "path", "body", "field", "message"), REFUSED, ids=[r[3] for r in REFUSED])
def test_json_the_transcoder_would_read_as_nothing_is_a_400_naming_the_field(
    api, method, path, body, field, message
):
    """Envoy's transcoder drops a null list item, flattens a list in a list, reads a null map value as
    "" and {} for a Timestamp as 1970-01-01T00:00:00Z; the Lua filter refuses them first."""
    request_id = f"lenient-{uuid.uuid4()}"
    response = api.request(
        method,
        path,
        content=body.encode(),
        headers={"Content-Type": "application/json", "X-Request-Id": request_id},
    )
    assert response.status_code == 400, response.text
    assert response.json()["message"] == f"{field}: {message}"
    details = _details(response)
    assert details["ErrorInfo"]["reason"] == "INVALID_ARGUMENT"
    assert details["RequestInfo"]["request_id"] == request_id
    assert _field_violations(details) == [field]
    assert [d["@type"].rsplit(".", 1)[-1] for d in response.json()["details"]] == [
        "ErrorInfo",
        "BadRequest",
        "RequestInfo",
    ]


@pytest.mark.parametrize(("method", "path", "body"), ACCEPTED)
def test_json_that_only_looks_like_it_reaches_the_server(api, method, path, body):
    response = api.request(method, path, content=body.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def test_query_without_a_content_type_is_envoys_own_400_saying_why(api):
    """Envoy 1.40 refuses it before any filter (query_missing_content_type; docs/decisions.md): not
    the 405 with `Allow` of the other undeclared methods, which QUERY with a Content-Type gets."""
    refused = api.request("QUERY", "/v1/exceptions", headers={"X-Request-Id": "query-no-type"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["message"].startswith("a QUERY request needs a Content-Type")
    details = _details(refused)
    assert details["ErrorInfo"]["reason"] == "INVALID_ARGUMENT"
    assert details["RequestInfo"]["request_id"] == "query-no-type"
    typed = api.request(
        "QUERY", "/v1/exceptions", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert (typed.status_code, typed.headers["allow"]) == (405, "GET, POST")


def test_big_and_deep_bodies_are_read_through_or_left_to_the_transcoder(api):
    """A null after 100 000 ids is still found; a body nested too deep for the reader is the
    transcoder's to answer (no 5xx, no hang)."""
    ids = ",".join(['"0b6f3e0e-8a53-4a8e-9d0b-6f1c2a3e4d5f"'] * 100_000)
    found = api.post(
        "/v1/exceptions/bulk/assign",
        content=f'{{"assignee": "a", "exception_ids": [{ids}, null]}}'.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert found.status_code == 400, found.text
    assert _field_violations(_details(found)) == ["exception_ids[100000]"]
    deep = api.post(
        "/v1/exceptions/bulk/assign",
        content=b'{"x": ' + b"[" * 500_000 + b"]" * 500_000 + b', "exception_ids": [null]}',
        headers={"Content-Type": "application/json"},
    )
    assert 400 <= deep.status_code < 500, deep.text
    assert _details(deep)["ErrorInfo"]["reason"] == "INVALID_ARGUMENT"
