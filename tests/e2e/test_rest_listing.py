"""Listing over REST: filters, sorting, and a cursor walk that sees each row once while rows are added."""

import pytest

from tests.e2e.conftest import violation_fields


@pytest.fixture
def tenant_api(api_for, request):
    # A tenant of its own per test, so counts are exact.
    return api_for(f"list-{request.node.name[:40]}")


def create_many(api, n, prefix="row"):
    body = {
        "exceptions": [
            {"transaction_id": f"{prefix}-{i}", "amount": str(i * 1000), "currency": "USD"} for i in range(n)
        ]
    }
    response = api.post("/v1/exceptions/bulk/create", json=body)
    assert response.status_code == 200, response.text
    return response.json()["exceptions"]


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_walk_sees_every_existing_row_once_while_rows_are_added(tenant_api, order):
    existing = {e["id"] for e in create_many(tenant_api, 23)}
    seen, cursor, added = [], None, set()
    while True:
        params = {"limit": 5, "sort_order": order} | ({"cursor": cursor} if cursor else {})
        page = tenant_api.get("/v1/exceptions", params=params).json()
        seen += [e["id"] for e in page["items"]]
        added |= {e["id"] for e in create_many(tenant_api, 2, prefix="late")}  # rows arrive mid-walk
        if not page["has_more"]:
            assert page["next_cursor"] == ""
            break
        cursor = page["next_cursor"]
        assert page["limit"] == 5
    assert len(seen) == len(set(seen)), "a row was returned twice"
    assert existing <= set(seen), "a row that existed before the walk was skipped"
    if order == "desc":
        assert not (set(seen) & added), "newest-first walk must not drift into rows added after it began"


def test_filters_and_severity_sort(tenant_api):
    rows = create_many(tenant_api, 12)  # amounts 0..11000: LOW, MEDIUM.., HIGH at >= 10000
    tenant_api.post("/v1/exceptions/bulk/assign", json={"exception_ids": [rows[0]["id"]], "assignee": "zoe"})
    high = tenant_api.get("/v1/exceptions", params={"severity": "HIGH"}).json()["items"]
    assert {e["transaction_id"] for e in high} == {"row-10", "row-11"}
    assigned = tenant_api.get("/v1/exceptions", params={"status": "ASSIGNED", "assigned_to": "zoe"}).json()
    assert [e["id"] for e in assigned["items"]] == [rows[0]["id"]]
    by_severity = tenant_api.get(
        "/v1/exceptions", params={"sort_by": "severity", "sort_order": "asc", "limit": 200}
    ).json()["items"]
    ranks = ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
    assert [ranks.index(e["severity"]) for e in by_severity] == sorted(
        ranks.index(e["severity"]) for e in rows
    )
    future = tenant_api.get("/v1/exceptions", params={"date_from": "2999-01-01T00:00:00Z"}).json()
    assert future["items"] == [] and future["has_more"] is False


def test_cursor_from_other_filters_is_refused(tenant_api):
    create_many(tenant_api, 3)
    page = tenant_api.get("/v1/exceptions", params={"limit": 1}).json()
    response = tenant_api.get(
        "/v1/exceptions", params={"limit": 1, "cursor": page["next_cursor"], "severity": "LOW"}
    )
    assert response.status_code == 400
    assert "cursor" in violation_fields(response)


def test_history_pages_oldest_first(tenant_api):
    eid = create_many(tenant_api, 1)[0]["id"]
    tenant_api.post("/v1/exceptions/bulk/assign", json={"exception_ids": [eid], "assignee": "a"})
    tenant_api.post("/v1/exceptions/bulk/assign", json={"exception_ids": [eid], "assignee": "b"})
    tenant_api.post(f"/v1/exceptions/{eid}/dispatch", json={"target_system": "MANUAL", "queue": "ops"})
    first = tenant_api.get(f"/v1/exceptions/{eid}/history", params={"limit": 2}).json()
    rest = tenant_api.get(
        f"/v1/exceptions/{eid}/history", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    actions = [h["action"] for h in first["items"] + rest["items"]]
    assert actions == ["CREATE", "ASSIGN", "ASSIGN", "DISPATCH"]
    assert rest["next_cursor"] == ""
    dispatch = rest["items"][-1]
    assert dispatch["changes"]["queue"] == "ops" and dispatch["actor_id"]
    assert first["items"][1]["changes"]["assigned_to"] == {"from": None, "to": "a"}
