"""Hostile input on every route (generated from the route table), over REST through Envoy: oversized
bodies, deep JSON nesting, invalid UTF-8 (in bodies, path variables, query parameters and headers),
NUL characters, huge headers, tampered cursors and out-of-range times. Each is refused cleanly: a
4xx whose body is the google.rpc.Status JSON, never a 5xx, never a stack trace.

tests/e2e/test_rest_errors.py already covers POST /v1/exceptions for the body cases; these extend
them to every route, and add what was found here (docs/hardening.md, "Bugs found")."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest
from google.protobuf.descriptor import FieldDescriptor

from server.contract.methods import load_methods
from server.contract.routes import Route, RouteTable

ROUTES = RouteTable(load_methods()).routes
BODY_ROUTES = [r for r in ROUTES if r.binding.body]
VARIABLE_ROUTES = [r for r in ROUTES if r.variables]
QUERY_ROUTES = [r for r in ROUTES if not r.binding.body and not r.method.public]
MAX_BODY = 4 * 1024 * 1024


def route_id(route: Route) -> str:
    return f"{route.binding.verb} {route.binding.path}"


def path_for(route: Route, value: str | None = None) -> str:
    segments = list(route.segments)
    for variable in route.variables:
        segments[variable.start : variable.end or len(segments)] = [value or str(uuid.uuid4())]
    return "/" + "/".join(segments)


def refusals(route: Route) -> tuple[int, ...]:
    """A signed hook checks its signature over the raw body before anything reads it: unsigned,
    whatever the body or path, it is a 401."""
    return (401,) if route.method.signed_hook else (400, 404, 422)


def assert_refused(response: httpx.Response, status: int | tuple[int, ...] = 400) -> dict:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


def send(client: httpx.Client, route: Route, content: bytes, path: str | None = None) -> httpx.Response:
    return client.request(
        route.binding.verb,
        path or path_for(route),
        content=content,
        headers={"Content-Type": "application/json", "X-Idempotency-Key": uuid.uuid4().hex},
    )


@pytest.mark.parametrize("route", BODY_ROUTES, ids=route_id)
def test_bodies_over_the_limit_are_413_on_every_route(client, route):
    content = b'{"x": "' + b"a" * MAX_BODY + b'"}'
    body = assert_refused(send(client, route, content), 413)
    assert body["details"][0]["reason"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe\xfa",
        b'{"a": "\xc3\x28"}',
        b'{"a": "\xed\xa0\x80"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b'{"a": "\\ud800"}',
        b"",
        b"null",
        b"[]",
        b'"x"',
        b"1e999999",
    ],
    ids=[
        "bad-utf8",
        "bad-utf8-in-string",
        "surrogate-bytes",
        "deep-array",
        "deep-object",
        "lone-surrogate-escape",
        "empty",
        "null",
        "array",
        "string",
        "huge-number",
    ],
)
@pytest.mark.parametrize("route", BODY_ROUTES, ids=route_id)
def test_malformed_bodies_are_clean_4xx_on_every_route(client, route, content):
    response = send(client, route, content)
    if content in (b"", b"null") and response.status_code < 300:
        return  # an empty body is the empty message; the route may accept it (nothing here is fatal)
    assert_refused(response, refusals(route))


@pytest.mark.parametrize("route", VARIABLE_ROUTES, ids=route_id)
@pytest.mark.parametrize("value", ["%ff%fe", "%c3%28", "%ed%a0%80", "%00", "..%2f..%2f", "%25", "a" * 4000])
def test_path_variables_that_are_not_text_are_400(client, route, value):
    """Bug found: invalid UTF-8 percent-decoded into a path variable was a bare 500 from grpc."""
    response = client.request(
        route.binding.verb,
        path_for(route, value),
        json={} if route.binding.body else None,
        headers={"X-Idempotency-Key": uuid.uuid4().hex} if route.method.mutating else {},
    )
    # 422 UNSUPPORTED_TARGET_SYSTEM for a target name that is text but no target system; a hook id
    # that is not text is refused by the request guard (400) before its signature is looked at.
    assert_refused(response, (400, 401) if route.method.signed_hook else (400, 404, 422))


@pytest.mark.parametrize("route", QUERY_ROUTES, ids=route_id)
def test_query_parameters_that_are_not_text_are_400(client, route):
    fields = [
        f.name
        for f in route.method.request_type.DESCRIPTOR.fields
        if f.type == FieldDescriptor.TYPE_STRING
        and f.name not in {".".join(v.field_path) for v in route.variables}
    ]
    for name in fields:
        for raw in ("%ff", "%c3%28", "%00", "a%00b"):
            response = client.get(f"{path_for(route)}?{name}={raw}")
            assert_refused(response, (400, 404))


@pytest.mark.parametrize("route", BODY_ROUTES, ids=route_id)
def test_nul_characters_in_any_body_string_are_400_naming_the_field(client, route):
    """Bug found: PostgreSQL refuses U+0000 in text (a 500); SQLite stored it. Now 400 on both."""
    bound = {".".join(v.field_path) for v in route.variables}
    strings = [
        f
        for f in route.method.request_type.DESCRIPTOR.fields
        if f.type == FieldDescriptor.TYPE_STRING and f.name not in bound
    ]
    for field in strings:
        value = ["a\x00b"] if field.is_repeated else "a\x00b"
        response = client.request(
            route.binding.verb,
            path_for(route, "MANUAL" if "target" in route.binding.path else None),
            json={field.name: value},
            headers={"X-Idempotency-Key": uuid.uuid4().hex},
        )
        body = assert_refused(response)
        assert field.name in body["message"], body


def test_nul_in_nested_strings_and_map_values_is_400(client):
    response = client.post(
        "/v1/exceptions/bulk/create",
        json={"exceptions": [{"transaction_id": "ok"}, {"transaction_id": "x\x00"}]},
    )
    assert "exceptions[1].transaction_id" in assert_refused(response)["message"]
    response = client.post("/v1/exceptions", json={"transaction_id": "t", "metadata": {"k": "\x00"}})
    assert assert_refused(response)["message"].startswith("metadata:")


def test_tampered_cursors_are_400(client):
    """Bug found: a cursor re-encoded with an integer beyond 64 bits was a 500 (the driver could not
    bind it). Cursors are opaque, not tamper-proof: every value a caller can put in one is checked."""
    for _ in range(2):
        client.post("/v1/exceptions", json={"transaction_id": "cursor"})
    for sort_by in ("severity", "status", "created_at", "updated_at", "id"):
        page = client.get("/v1/exceptions", params={"limit": 1, "sort_by": sort_by})
        cursor = page.json()["next_cursor"]
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        for value in (
            10**30,
            -(2**63) - 1,
            True,
            None,
            1.5,
            [],
            {},
            "x",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2026-01-01T00:00:00",
        ):
            for row_id in (data["i"], "not-a-uuid", 7):
                forged = {**data, "v": value, "i": row_id}
                raw = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
                response = client.get(
                    "/v1/exceptions", params={"limit": 1, "sort_by": sort_by, "cursor": raw}
                )
                assert response.status_code in (200, 400), (sort_by, value, response.text[:200])
                if response.status_code == 400:
                    assert_refused(response)


@pytest.mark.parametrize("name", ["date_from", "date_to"])
@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "0000-01-01T00:00:00Z",
        "2026-13-01T00:00:00Z",
    ],
)
def test_times_out_of_range_are_400(client, name, value):
    """Bug found: 0001-01-01T00:00:00+14:00 parsed, then overflowed in the PostgreSQL driver (500)."""
    assert_refused(client.get("/v1/exceptions", params={name: value}))


def test_huge_and_numerous_headers_are_json_431(client):
    for headers in ({"X-Big": "a" * 100_000}, {f"X-H{i}": "a" for i in range(200)}):
        assert_refused(client.get("/v1/exceptions", headers=headers), 431)
    huge_token = client.get("/v1/exceptions", headers={"Authorization": "Bearer " + "a" * 50_000})
    assert_refused(huge_token, 401)


def test_headers_that_are_not_utf8_are_refused_or_replaced(client):
    bad_key = client.post(
        "/v1/exceptions", json={"transaction_id": "t"}, headers={"X-Idempotency-Key": b"k\xff"}
    )
    assert assert_refused(bad_key)["details"][0]["reason"] == "INVALID_IDEMPOTENCY_KEY"
    bad_token = client.get("/v1/exceptions", headers={"Authorization": b"Bearer \xff\xfe"})
    assert_refused(bad_token, 401)
    assert client.get("/v1/exceptions", headers={"X-Request-Id": b"r\xff"}).status_code == 200


@pytest.mark.parametrize("request_id", ["has space", "x" * 200])
def test_the_echoed_request_id_is_the_one_in_the_logs_and_error_details(client, request_id):
    response = client.get(f"/v1/exceptions/{uuid.uuid4()}", headers={"X-Request-Id": request_id})
    [info] = [d for d in response.json()["details"] if d["@type"].endswith("RequestInfo")]
    assert response.headers["x-request-id"] == info["request_id"]


def test_deep_nesting_inside_a_bulk_data_string_is_400(client):
    deep = "[" * 100_000 + "]" * 100_000
    response = client.post(
        "/v1/bulk", json={"requests": [{"url": "/v1/exceptions", "method": "POST", "data": deep}]}
    )
    assert_refused(response)


def test_bulk_sub_requests_carry_the_same_guards(client):
    items = [
        {"url": "/v1/exceptions/%ff"},
        {"url": "/v1/exceptions?assigned_to=%00"},
        {"url": "/v1/exceptions", "method": "POST", "data": json.dumps({"transaction_id": "a\u0000"})},
        {"url": "/v1/exceptions", "method": "POST", "data": '{"transaction_id": "\\ud800"}'},
    ]
    response = client.post("/v1/bulk", json={"requests": items})
    if response.status_code == 400:  # refused as a whole (the envelope holds a NUL): also clean
        assert_refused(response)
        return
    assert response.status_code == 200, response.text
    for item in response.json():
        assert 400 <= item["status"] < 500, item
        assert "Traceback" not in json.dumps(item)


@pytest.mark.parametrize(
    "headers",
    [
        {"'x": "1"},
        {"x!y": "1"},
        {"x|y": "1"},
        {"x-foo-bin": "!!!"},
        {"grpc-timeout": "garbage"},
        {"grpc-timeout": "1n"},
        {"grpc-encoding": "snappy"},
        {"grpc-encoding": "gzip"},
        {"grpc-status": "3"},
    ],
    ids=str,
)
@pytest.mark.parametrize("route", [r for r in ROUTES if r.binding.verb == "GET"], ids=route_id)
def test_headers_grpc_cannot_carry_are_dropped_not_a_500(client, route, headers):
    """Bug found by the fuzzer: Envoy turns every REST header into gRPC metadata, and the server's
    gRPC core refused names like `'x`, undecodable `*-bin` values and grpc-* values with a bare
    500 (or obeyed `grpc-timeout: 1n` with a 504). Envoy now drops them for REST calls."""
    response = client.get(
        path_for(route, "WEBHOOK" if "target" in route.binding.path else None), headers=headers
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_refused(response, response.status_code)


def violated_fields(body: dict) -> list[str]:
    return [
        v["field"]
        for d in body["details"]
        if d["@type"].endswith("BadRequest")
        for v in d.get("fieldViolations", d.get("field_violations", []))
    ]


@pytest.mark.parametrize(
    ("path", "json_body", "field"),
    [
        ("/v1/exceptions", {"transaction_id": "t", "severity": 99}, "severity"),
        ("/v1/exceptions", {"transaction_id": "t", "severity": -3}, "severity"),
        (
            "/v1/exceptions/bulk/create",
            {"exceptions": [{"transaction_id": "a"}] * 3 + [{"transaction_id": "b", "severity": 99}]},
            "exceptions[3].severity",
        ),
    ],
    ids=["severity", "negative", "nested"],
)
def test_unknown_enum_numbers_in_bodies_are_400_naming_the_field(client, path, json_body, field):
    """Bug found: proto3 enums are open, so the transcoder passed 99 on; the domain's conversion by
    name raised ValueError (a 500 with a traceback in the log)."""
    response = client.post(path, json=json_body, headers={"X-Idempotency-Key": uuid.uuid4().hex})
    assert violated_fields(assert_refused(response)) == [field]


def test_unknown_enum_numbers_in_bulk_sub_requests_are_400_naming_the_field(client):
    """Bug found: /v1/bulk transcodes sub-requests itself and let numeric enums through (a 500 each).
    (Envoy already refuses `?status=42` on a plain REST call, with the field in its message.)"""
    items = [
        {"url": "/v1/exceptions?status=42"},
        {"url": "/v1/deliveries?state=77"},
        {"url": "/v1/exceptions", "method": "POST", "data": '{"transaction_id": "t", "severity": 99}'},
    ]
    response = client.post("/v1/bulk", json={"requests": items})
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [item["status"] for item in answers] == [400, 400, 400], answers
    for item, field in zip(answers, ["status", "state", "severity"], strict=True):
        assert "Traceback" not in json.dumps(item)
        assert violated_fields(item["contents"]) == [field], item
