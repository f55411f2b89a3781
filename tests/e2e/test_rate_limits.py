"""RATE_LIMIT_DISPATCH_PER_MINUTE through Envoy: 429 RATE_LIMITED with Retry-After, per tenant,
dispatch routes only."""

import httpx

from tests.e2e.conftest import error_reason
from tests.support.stack import Stack


def test_dispatch_routes_are_limited_per_tenant(tmp_path):
    env = {"RATE_LIMIT_DISPATCH_PER_MINUTE": "3"}
    with Stack(f"sqlite:///{tmp_path / 'db.sqlite'}", env, work_dir=tmp_path) as stack:
        scopes = ["exceptions:read", "exceptions:write", "exceptions:dispatch"]
        a = httpx.Client(
            base_url=stack.base_url, headers={"Authorization": f"Bearer {stack.create_token('a', scopes)}"}
        )
        b = httpx.Client(
            base_url=stack.base_url, headers={"Authorization": f"Bearer {stack.create_token('b', scopes)}"}
        )
        eid = a.post("/v1/exceptions", json={"transaction_id": "rl"}).json()["id"]
        calls = [
            lambda: a.post(f"/v1/exceptions/{eid}/dispatch", json={"target_system": "MANUAL"}),
            lambda: a.post(
                "/v1/exceptions/bulk/dispatch", json={"exception_ids": [eid], "target_system": "MANUAL"}
            ),
            lambda: a.post(f"/v1/exceptions/{eid}/dispatch", json={"target_system": "MANUAL", "queue": "x"}),
        ]
        assert [call().status_code for call in calls] == [200, 200, 200]
        limited = a.post(
            "/v1/exceptions/bulk/dispatch", json={"exception_ids": [eid], "target_system": "MANUAL"}
        )
        assert limited.status_code == 429
        assert error_reason(limited) == "RATE_LIMITED"
        # Up to two minutes: the calls of this minute still count in full when the next one starts.
        assert 1 <= int(limited.headers["retry-after"]) <= 120
        assert any(d["@type"].endswith("RetryInfo") for d in limited.json()["details"])
        # Other routes and other tenants are not affected.
        assert a.get(f"/v1/exceptions/{eid}").status_code == 200
        other = b.post("/v1/exceptions", json={"transaction_id": "rl-b"}).json()["id"]
        assert b.post(f"/v1/exceptions/{other}/dispatch", json={"target_system": "MANUAL"}).status_code == 200
