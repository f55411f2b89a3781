"""API.md §1 over REST through Envoy: casing, enums, request ids, headers, health."""

import uuid

import httpx

from tests.e2e.conftest import error_reason


def test_healthz_needs_no_token(stack):
    response = httpx.get(f"{stack.base_url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "SERVING"}


def test_livez_needs_no_token_and_no_database(stack):
    response = httpx.get(f"{stack.base_url}/livez")
    assert (response.status_code, response.json()) == (200, {"status": "LIVE"})


def test_output_is_snake_case_with_bare_enum_words(create):
    body = create(transaction_id="txn-case", amount="1500.5", currency="EUR", metadata={"desk": "FX"})
    assert body["transaction_id"] == "txn-case"
    assert (body["severity"], body["status"]) == ("MEDIUM", "OPEN")
    assert body["amount"] == "1500.50"
    assert body["metadata"] == {"desk": "FX"}
    assert body["created_at"].endswith("Z")
    assert "transactionId" not in body


def test_camel_case_and_snake_case_bodies_are_the_same_request(api, create):
    ids = [create()["id"], create()["id"]]
    snake = api.post("/v1/exceptions/bulk/assign", json={"exception_ids": ids[:1], "assignee": "ann"})
    camel = api.post("/v1/exceptions/bulk/dispatch", json={"exceptionIds": ids[1:], "targetSystem": "MANUAL"})
    assert (snake.status_code, camel.status_code) == (200, 200)
    assert snake.json()["succeeded"] == ids[:1]
    assert camel.json() == {"succeeded": ids[1:], "failed": [], "total": 1}
    camel_create = api.post(
        "/v1/exceptions", json={"transactionId": "camel-1", "occurredAt": "2026-01-01T00:00:00Z"}
    )
    assert camel_create.status_code == 200
    assert camel_create.json()["transaction_id"] == "camel-1"
    assert camel_create.json()["severity"] == "CRITICAL"  # classified from age


def test_query_parameters_accept_both_spellings(api, create):
    create()
    for params in ({"sort_by": "id", "sort_order": "asc"}, {"sortBy": "id", "sortOrder": "asc"}):
        response = api.get("/v1/exceptions", params=params | {"limit": 5})
        assert response.status_code == 200, response.text
        ids = [e["id"] for e in response.json()["items"]]
        assert ids == sorted(ids)


def test_request_id_is_echoed_or_generated_on_success_and_error(api):
    given = api.get("/v1/exceptions", headers={"X-Request-Id": "trace-abc-1"})
    assert given.headers["x-request-id"] == "trace-abc-1"
    failed = api.get(f"/v1/exceptions/{uuid.uuid4()}", headers={"X-Request-Id": "trace-abc-2"})
    assert failed.status_code == 404
    assert failed.headers["x-request-id"] == "trace-abc-2"
    assert any(
        d.get("requestId") == "trace-abc-2" or d.get("request_id") == "trace-abc-2"
        for d in failed.json()["details"]
    )
    generated = api.get("/v1/exceptions")
    assert uuid.UUID(generated.headers["x-request-id"])


def test_request_id_reaches_the_server_log(api, stack):
    api.get("/v1/exceptions", headers={"X-Request-Id": "log-trace-77"})
    assert '"request_id": "log-trace-77"' in stack.logs()


def test_no_grpc_headers_leak(api, create):
    responses = [
        api.get("/v1/exceptions"),
        api.get(f"/v1/exceptions/{uuid.uuid4()}"),
        api.post(
            "/v1/exceptions/bulk/dispatch", json={"exception_ids": [create()["id"]], "target_system": "NOPE"}
        ),
        api.get("/v1/no/such/route"),
    ]
    for response in responses:
        leaked = [h for h in response.headers if h.startswith("grpc-") or h == "x-http-status"]
        assert leaked == [], (response.status_code, leaked)
        assert response.headers["content-type"].startswith("application/json")


def test_unknown_route_is_json_404(api):
    response = api.get("/v1/nothing-here")
    assert response.status_code == 404
    assert error_reason(response) == "NOT_FOUND"
