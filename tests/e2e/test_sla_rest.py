"""SLA policy and due dates through Envoy (API.md §8): the seed defaults, custom tiers, due_at on
create (single and bulk), and the overdue list with its paging."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.e2e.conftest import error_reason, violation_fields


def tenant() -> str:
    return f"sla-{uuid.uuid4().hex[:8]}"


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_defaults_custom_tiers_and_due_dates_on_create(api_for):
    api = api_for(tenant())
    policy = api.get("/v1/sla-policy")
    assert policy.status_code == 200, policy.text
    assert policy.json()["tiers"] == [
        {"severity": "CRITICAL", "due_in_hours": 24},
        {"severity": "HIGH", "due_in_hours": 72},
        {"severity": "MEDIUM", "due_in_hours": 120},
        {"severity": "LOW", "due_in_hours": 168},
    ]
    occurred = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    body = {"transaction_id": "t", "severity": "HIGH", "occurred_at": occurred.isoformat()}
    created = api.post("/v1/exceptions", json=body).json()
    assert ts(created["due_at"]) == occurred + timedelta(hours=72)

    put = api.put(
        "/v1/sla-policy",
        json={"tiers": [{"severity": "HIGH", "dueInHours": 2}], "escalation": {"targetSystem": "manual"}},
    )
    assert put.status_code == 200, put.text
    assert put.json()["tiers"][1] == {"severity": "HIGH", "due_in_hours": 2}
    assert put.json()["escalation"] == {"target_system": "MANUAL"}
    assert api.get("/v1/sla-policy").json() == put.json()
    batch = api.post(
        "/v1/exceptions/bulk/create",
        json={"exceptions": [body, {**body, "severity": "LOW"}, {**body, "due_at": "2030-01-01T00:00:00Z"}]},
    ).json()["exceptions"]
    assert [ts(e["due_at"]) for e in batch] == [
        occurred + timedelta(hours=2),
        occurred + timedelta(hours=168),
        datetime(2030, 1, 1, tzinfo=UTC),
    ]
    # Another tenant still has the defaults.
    assert api_for(tenant()).get("/v1/sla-policy").json()["tiers"][1]["due_in_hours"] == 72


def test_policy_validation(api_for):
    api = api_for(tenant())
    bad = api.put("/v1/sla-policy", json={"tiers": [{"severity": "HIGH", "due_in_hours": 0}]})
    assert bad.status_code == 400 and violation_fields(bad) == {"tiers[0].due_in_hours"}
    unknown = api.put("/v1/sla-policy", json={"escalation": {"target_system": "PAGER"}})
    assert unknown.status_code == 422 and error_reason(unknown) == "UNSUPPORTED_TARGET_SYSTEM"
    reader = api_for(tenant(), ("exceptions:read",))
    assert reader.put("/v1/sla-policy", json={}).status_code == 403
    assert reader.get("/v1/sla-policy").status_code == 200


def test_overdue_list_pages_most_overdue_first(api_for):
    api = api_for(tenant())
    now = datetime.now(UTC).replace(microsecond=0)
    items = [
        {
            "transaction_id": f"late-{i}",
            "severity": "CRITICAL",
            "occurred_at": (now - timedelta(hours=30 + i)).isoformat(),
        }
        for i in range(5)
    ]
    items.append({"transaction_id": "on-time", "severity": "CRITICAL"})
    long_ago = (now - timedelta(days=9)).isoformat()
    items.append({"transaction_id": "explicit-late", "severity": "LOW", "due_at": long_ago})
    created = api.post("/v1/exceptions/bulk/create", json={"exceptions": items}).json()["exceptions"]
    late, explicit = created[:5], created[6]
    resolved = api.post(
        "/v1/exceptions/bulk/resolve", json={"exception_ids": [late[0]["id"]], "resolution": "done"}
    )
    assert resolved.status_code == 200
    seen, cursor = [], ""
    while True:
        page = api.get("/v1/exceptions", params={"overdue": "true", "limit": 2, "cursor": cursor})
        assert page.status_code == 200, page.text
        seen += [e["id"] for e in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert seen == [explicit["id"]] + [e["id"] for e in reversed(late[1:])]
    by_due = api.get("/v1/exceptions", params={"sort_by": "due_at", "sort_order": "asc"}).json()["items"]
    assert [e["id"] for e in by_due][:5] == seen
    assert len(by_due) == 7
