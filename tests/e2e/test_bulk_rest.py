"""POST /v1/bulk over REST through Envoy (API.md §4, seed 001, and the features beyond the seed)."""

import json
import uuid

import httpx
import pytest

from server.domain.auth import SCOPES
from tests.e2e.conftest import error_reason, violation_fields
from tests.support.databases import database_urls
from tests.support.stack import Stack


def create_item(txn: str, **extra) -> dict:
    # `data` as seed 001 documents it: a JSON-encoded string.
    return {"url": "/v1/exceptions", "method": "POST", "data": json.dumps({"transaction_id": txn}), **extra}


def bulk(api, *requests, **fields) -> list[dict]:
    response = api.post("/v1/bulk", json={"requests": list(requests), **fields})
    assert response.status_code == 200, response.text
    return response.json()


def fresh_tenant(api_for, scopes=SCOPES):
    return api_for(f"bulk-{uuid.uuid4().hex[:8]}", tuple(scopes))


def test_the_seed_example_runs_in_order_and_answers_a_bare_array(api_for):
    api = fresh_tenant(api_for)
    response = api.post(
        "/v1/bulk",
        json={"requests": [create_item("test123"), {"url": "/v1/exceptions", "method": "GET"}]},
        headers={"X-Request-Id": "seed-batch"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "seed-batch"
    created, listed = response.json()
    assert set(created) == set(listed) == {"contents", "headers", "status"}
    assert (created["status"], listed["status"]) == (200, 200)
    assert created["contents"]["transaction_id"] == "test123"
    # The second call sees the first one's write.
    assert [e["id"] for e in listed["contents"]["items"]] == [created["contents"]["id"]]
    assert [created["headers"]["x-request-id"], listed["headers"]["x-request-id"]] == [
        "seed-batch:0",
        "seed-batch:1",
    ]


def test_data_as_object_headers_in_both_shapes_default_method_and_a_missing_slash(api_for):
    api = fresh_tenant(api_for)
    results = bulk(
        api,
        {
            "url": "v1/exceptions",
            "method": "post",
            "data": {"transactionId": "obj", "amount": "1500", "currency": "EUR"},
            "headers": [{"name": "Idempotency-Key", "value": "shape-1"}],
        },
        {"url": "/v1/exceptions?limit=1", "headers": {"X-Idempotency-Key": "ignored-on-reads"}},
    )
    assert [r["status"] for r in results] == [200, 200]
    assert results[0]["contents"]["amount"] == "1500.00"
    assert results[0]["headers"]["x-idempotency-replayed"] == "false"
    assert "x-idempotency-replayed" not in results[1]["headers"]


def test_ids_and_references_create_then_dispatch_by_the_id_it_was_given(api_for):
    api = fresh_tenant(api_for)
    results = bulk(
        api,
        create_item("ref-1", id="new"),
        {"url": "/v1/exceptions/@{new.id}/dispatch", "method": "POST", "data": {"target_system": "MANUAL"}},
        {
            "id": "assign",
            "url": "/v1/exceptions/bulk/assign",
            "method": "POST",
            "data": '{"exception_ids": ["@{new.id}"], "assignee": "@{new.transaction_id}-owner"}',
        },
        {"url": "/v1/exceptions/@{new.id}/history?limit=@{assign.total}"},
    )
    assert [r["status"] for r in results] == [200, 200, 200, 200], results
    new_id = results[0]["contents"]["id"]
    assert results[0]["id"] == "new" and results[2]["id"] == "assign" and "id" not in results[1]
    assert results[1]["contents"]["exception_id"] == new_id
    assert results[2]["contents"]["succeeded"] == [new_id]
    assert [h["action"] for h in results[3]["contents"]["items"]] == ["CREATE"]  # limit=1
    fetched = api.get(f"/v1/exceptions/{new_id}").json()
    assert (fetched["external_system"], fetched["assigned_to"]) == ("MANUAL", "ref-1-owner")


def test_a_failing_sub_request_does_not_stop_the_rest_and_dependants_answer_424(api_for):
    api = fresh_tenant(api_for)
    results = bulk(
        api,
        {"url": "/v1/exceptions/@{later.id}"},
        {"id": "gone", "url": f"/v1/exceptions/{uuid.uuid4()}"},
        {"url": "/v1/exceptions/@{gone.id}/history"},
        create_item("still-runs", id="later"),
        {"url": "/v1/exceptions/@{later.nope}"},
    )
    assert [r["status"] for r in results] == [424, 404, 424, 200, 400]
    reasons = [r["contents"]["details"][0]["reason"] for r in results if r["status"] != 200]
    assert reasons == ["DEPENDENCY_FAILED", "NOT_FOUND", "DEPENDENCY_FAILED", "INVALID_REFERENCE"]
    assert [e["transaction_id"] for e in api.get("/v1/exceptions").json()["items"]] == ["still-runs"]


@pytest.mark.parametrize("spelling", ["halt_on_error", "haltOnError"])
def test_halt_on_error_stops_at_the_first_failure(api_for, spelling):
    api = fresh_tenant(api_for)
    results = bulk(
        api,
        create_item("before"),
        {"url": "/v1/exceptions/not-a-uuid"},
        create_item("after"),
        **{spelling: True},
    )
    assert [r["status"] for r in results] == [200, 400, 424]
    assert results[2]["contents"]["details"][0]["reason"] == "BATCH_HALTED"
    assert [e["transaction_id"] for e in api.get("/v1/exceptions").json()["items"]] == ["before"]


@pytest.mark.parametrize(
    ("requests", "field"),
    [
        ([{"url": "/v1/nothing"}], "requests[1].url"),
        ([{"url": "/v1/exceptions", "method": "DELETE"}], "requests[1].url"),
        ([{"url": "/v1/exceptions", "method": "BREW"}], "requests[1].method"),
        ([{"url": "/v1/exceptions", "method": "POST", "data": "{oops"}], "requests[1].data"),
        ([{"url": "/v1/bulk", "method": "POST", "data": {"requests": []}}], "requests[1].url"),
        ([{"url": "/v1/exceptions/@{nobody.id}"}], "requests[1]"),
        ([{"url": "/v1/exceptions"}] * 100, "requests"),
    ],
    ids=[
        "unknown route",
        "unsupported method",
        "bad method",
        "data not json",
        "nested",
        "unknown reference",
        "101",
    ],
)
def test_an_invalid_envelope_is_a_400_and_nothing_runs(api_for, requests, field):
    api = fresh_tenant(api_for)
    response = api.post("/v1/bulk", json={"requests": [create_item("must-not-exist"), *requests]})
    assert response.status_code == 400, response.text
    assert error_reason(response) == "INVALID_ARGUMENT"
    assert field in violation_fields(response)
    assert api.get("/v1/exceptions").json()["items"] == []


def test_the_default_cap_is_100(api_for):
    api = fresh_tenant(api_for)
    results = bulk(api, *[{"url": "/v1/exceptions?limit=1"}] * 100)
    assert len(results) == 100 and {r["status"] for r in results} == {200}


def test_the_outer_call_needs_a_token_and_sub_requests_cannot_bring_their_own(stack, api_for):
    anonymous = httpx.post(f"{stack.base_url}/v1/bulk", json={"requests": [{"url": "/v1/exceptions"}]})
    assert anonymous.status_code == 401
    reader = fresh_tenant(api_for, ("exceptions:read",))
    intruder_token = stack.create_token("bulk-intruder", list(SCOPES))
    results = bulk(
        reader,
        create_item("x", headers={"Authorization": f"Bearer {intruder_token}"}),
        {"url": "/v1/exceptions", "headers": {"Authorization": f"Bearer {intruder_token}"}},
    )
    # The write needs a scope the outer token lacks; the read lists the outer tenant's (empty) rows.
    assert [r["status"] for r in results] == [403, 200]
    assert results[0]["contents"]["details"][0]["reason"] == "PERMISSION_DENIED"
    assert results[1]["contents"]["items"] == []


def test_a_sub_requests_own_idempotency_key_replays_its_answer(api_for):
    api = fresh_tenant(api_for)
    item = create_item("idem-sub", headers={"Idempotency-Key": "sub-1"})
    first = bulk(api, item)[0]
    second = bulk(api, item)[0]
    assert (first["headers"]["x-idempotency-replayed"], second["headers"]["x-idempotency-replayed"]) == (
        "false",
        "true",
    )
    assert second["contents"] == first["contents"]
    reused = bulk(api, create_item("different", headers={"Idempotency-Key": "sub-1"}))[0]
    assert (reused["status"], reused["contents"]["details"][0]["reason"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert len(api.get("/v1/exceptions").json()["items"]) == 1


def test_the_outer_idempotency_key_replays_the_whole_batch(api_for):
    api = fresh_tenant(api_for)
    body = {
        "requests": [create_item("outer-a"), {"url": "/v1/exceptions/not-a-uuid"}, create_item("outer-b")]
    }
    first = api.post("/v1/bulk", json=body, headers={"Idempotency-Key": "batch-1"})
    second = api.post("/v1/bulk", json=body, headers={"Idempotency-Key": "batch-1"})
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.headers["x-idempotency-replayed"] == "false"
    assert second.headers["x-idempotency-replayed"] == "true"
    assert second.content == first.content
    # The failed sub-request did not undo its siblings, and the replay ran nothing.
    assert sorted(e["transaction_id"] for e in api.get("/v1/exceptions").json()["items"]) == [
        "outer-a",
        "outer-b",
    ]
    changed = api.post(
        "/v1/bulk", json={"requests": body["requests"][:1]}, headers={"Idempotency-Key": "batch-1"}
    )
    assert (changed.status_code, error_reason(changed)) == (422, "IDEMPOTENCY_KEY_REUSED")


@pytest.fixture(scope="module", params=database_urls())
def limited(request, tmp_path_factory):
    """A stack with a cap of 3 and a time budget shorter than any call."""
    work = tmp_path_factory.mktemp("bulk-limits")
    env = {"BULK_MAX_REQUESTS": "3", "BULK_TIME_BUDGET_SECONDS": "0.000000001"}
    with request.param(work) as url, Stack(url, env, work_dir=work) as running:
        token = running.create_token("limited", list(SCOPES))
        with httpx.Client(base_url=running.base_url, headers={"Authorization": f"Bearer {token}"}) as client:
            yield client


def test_the_request_cap_is_a_setting(limited):
    response = limited.post("/v1/bulk", json={"requests": [create_item("cap")] * 4})
    assert response.status_code == 400
    assert "requests: must contain at most 3 requests" in response.json()["message"]


def test_sub_requests_not_started_within_the_time_budget_answer_504(limited):
    results = bulk(limited, create_item("budget-1"), create_item("budget-2"), {"url": "/v1/exceptions"})
    assert [r["status"] for r in results] == [200, 504, 504]
    assert results[1]["contents"]["details"][0]["reason"] == "TIME_BUDGET_EXCEEDED"
    assert [e["transaction_id"] for e in limited.get("/v1/exceptions").json()["items"]] == ["budget-1"]
