"""Routing rules through Envoy (API.md §8): CRUD with validation answers naming the field, scopes,
idempotent writes, and evaluate's explanations."""

from __future__ import annotations

import uuid

from tests.e2e.conftest import error_reason, violation_fields

RULE = {
    "name": "big USD to JIRA",
    "priority": 10,
    "conditions": {"severities": ["HIGH", "CRITICAL"], "minAmount": "1000.00", "currency": "USD"},
    "action": {"targetSystem": "jira", "queue": "OPS", "severity": "CRITICAL", "severityReason": "large"},
}


def tenant() -> str:
    return f"routing-{uuid.uuid4().hex[:8]}"


def test_rule_crud_through_envoy(api_for):
    api = api_for(tenant())
    created = api.post("/v1/routing-rules", json=RULE)
    assert created.status_code == 200, created.text
    rule = created.json()
    assert rule["priority"] == 10 and rule["enabled"] is True and rule["auto_dispatch"] is False
    assert rule["conditions"] == {
        "severities": ["HIGH", "CRITICAL"],
        "min_amount": "1000.00",
        "currency": "USD",
        "sources": [],
        "metadata": {},
    }
    assert rule["action"] == {
        "target_system": "JIRA",
        "queue": "OPS",
        "severity": "CRITICAL",
        "severity_reason": "large",
    }
    second = api.post(
        "/v1/routing-rules",
        json={
            "name": "rest",
            "priority": 5,
            "conditions": {"min_age_hours": 0},
            "action": {"target_system": "MANUAL"},
        },
    ).json()
    listed = api.get("/v1/routing-rules").json()["items"]
    assert [r["id"] for r in listed] == [second["id"], rule["id"]]
    assert api.get(f"/v1/routing-rules/{rule['id']}").json() == rule
    put = api.put(f"/v1/routing-rules/{rule['id']}", json={**RULE, "priority": 1, "enabled": False})
    assert put.status_code == 200, put.text
    assert put.json()["enabled"] is False and put.json()["created_at"] == rule["created_at"]
    assert api.delete(f"/v1/routing-rules/{second['id']}").status_code == 200
    assert api.get(f"/v1/routing-rules/{second['id']}").status_code == 404
    assert [r["id"] for r in api.get("/v1/routing-rules").json()["items"]] == [rule["id"]]
    # Another tenant sees none of it.
    other = api_for(tenant())
    assert other.get(f"/v1/routing-rules/{rule['id']}").status_code == 404
    assert other.get("/v1/routing-rules").json() == {"items": []}


def test_invalid_rules_name_the_field(api_for):
    api = api_for(tenant())
    empty = api.post("/v1/routing-rules", json={**RULE, "conditions": {}})
    assert empty.status_code == 400 and violation_fields(empty) == {"conditions"}
    no_reason = api.post(
        "/v1/routing-rules", json={**RULE, "action": {"target_system": "JIRA", "severity": "LOW"}}
    )
    assert no_reason.status_code == 400 and violation_fields(no_reason) == {"action.severity_reason"}
    unknown = api.post("/v1/routing-rules", json={**RULE, "action": {"target_system": "EMAIL"}})
    assert unknown.status_code == 422 and error_reason(unknown) == "UNSUPPORTED_TARGET_SYSTEM"
    assert violation_fields(unknown) == {"action.target_system"}
    assert api.post("/v1/routing-rules", json=RULE).status_code == 200
    duplicate = api.post("/v1/routing-rules", json={**RULE, "name": "again"})
    assert duplicate.status_code == 422 and error_reason(duplicate) == "DUPLICATE_PRIORITY"
    assert violation_fields(duplicate) == {"priority"}
    assert len(api.get("/v1/routing-rules").json()["items"]) == 1


def test_scopes_writes_need_targets_admin(api_for):
    name = tenant()
    reader = api_for(name, ("exceptions:read", "exceptions:write"))
    refused = reader.post("/v1/routing-rules", json=RULE)
    assert refused.status_code == 403
    assert reader.get("/v1/routing-rules").status_code == 200


def test_writes_are_idempotent(api_for):
    api = api_for(tenant())
    headers = {"Idempotency-Key": f"rule-{uuid.uuid4().hex}"}
    first = api.post("/v1/routing-rules", json=RULE, headers=headers)
    again = api.post("/v1/routing-rules", json=RULE, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.headers["x-idempotency-replayed"] == "false"
    assert again.headers["x-idempotency-replayed"] == "true"
    assert again.json() == first.json()
    assert len(api.get("/v1/routing-rules").json()["items"]) == 1
    reused = api.post("/v1/routing-rules", json={**RULE, "priority": 99}, headers=headers)
    assert reused.status_code == 422 and error_reason(reused) == "IDEMPOTENCY_KEY_REUSED"


def test_evaluate_explains_why_each_rule_did_or_did_not_match(api_for):
    api = api_for(tenant())
    exc = api.post(
        "/v1/exceptions",
        json={
            "transaction_id": "t-1",
            "severity": "HIGH",
            "amount": "2500.00",
            "currency": "USD",
            "source": "bank",
            "reason": "Amount mismatch",
            "metadata": {"desk": "fx"},
        },
    ).json()
    rules = [
        {"name": "eur", "priority": 1, "conditions": {"minAmount": "1", "currency": "EUR"}},
        {"name": "ledger", "priority": 2, "conditions": {"sources": ["ledger"], "metadata": {"desk": "mm"}}},
        {"name": "off", "priority": 3, "enabled": False, "conditions": {"reasonContains": "mismatch"}},
        {
            "name": "hit",
            "priority": 4,
            "conditions": {"reasonContains": "MISMATCH", "metadata": {"desk": "fx"}},
        },
        {"name": "later", "priority": 5, "conditions": {"severities": ["HIGH"]}},
    ]
    ids = []
    for r in rules:
        action = {"target_system": "MANUAL", "queue": r["name"]}
        response = api.post("/v1/routing-rules", json={**r, "action": action})
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    answer = api.post("/v1/routing-rules/evaluate", json={"exceptionId": exc["id"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["matched_rule_id"] == ids[3]
    assert body["action"] == {"target_system": "MANUAL", "queue": "hit"}
    seen = [(r["rule_id"], r.get("matched", False), r.get("failed_conditions", [])) for r in body["rules"]]
    assert seen == [
        (ids[0], False, ["currency"]),
        (ids[1], False, ["sources", "metadata.desk"]),
        (ids[2], False, ["enabled"]),
        (ids[3], True, []),
        (ids[4], True, []),
    ]
    missing = api.post("/v1/routing-rules/evaluate", json={"exception_id": str(uuid.uuid4())})
    assert missing.status_code == 404
