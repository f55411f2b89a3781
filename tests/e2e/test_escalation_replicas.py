"""Escalation across replicas on the machine's PostgreSQL (API.md §8): two replicas' schedulers look
for overdue exceptions every 0.1 s; each overdue unresolved exception is escalated, and delivered to
the SLA policy's escalation target, exactly once."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.fernet import Fernet

from server.domain.auth import SCOPES
from tests.support.cluster import Cluster
from tests.support.databases import ENV_VAR, fresh_postgres_url
from tests.support.standins import WebhookReceiver

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get(ENV_VAR), reason=f"{ENV_VAR} is not set"),
]


@pytest.fixture
def cluster(tmp_path):
    env = {"ESCALATION_POLL_SECONDS": "0.1", "TARGET_SECRETS_KEY": Fernet.generate_key().decode()}
    with fresh_postgres_url(os.environ[ENV_VAR]) as url, Cluster(url, 2, env, work_dir=tmp_path) as running:
        yield running


def test_overdue_exceptions_escalate_once_across_two_replicas(cluster):
    token = cluster.create_token("escalation", list(SCOPES))
    headers = {"Authorization": f"Bearer {token}"}
    with (
        WebhookReceiver() as receiver,
        httpx.Client(base_url=cluster.base_url, headers=headers, timeout=30) as http,
    ):
        target = {"url": receiver.url, "secret": receiver.secret}
        assert http.put("/v1/targets/WEBHOOK", json=target).is_success
        policy = {
            "tiers": [{"severity": "CRITICAL", "due_in_hours": 1}],
            "escalation": {"target_system": "WEBHOOK"},
        }
        assert http.put("/v1/sla-policy", json=policy).status_code == 200
        long_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
        late_item = {"severity": "CRITICAL", "occurred_at": long_ago}
        items = [{"transaction_id": f"late-{i}", **late_item} for i in range(30)]
        items.append({"transaction_id": "on-time", "severity": "CRITICAL"})
        created = http.post("/v1/exceptions/bulk/create", json={"exceptions": items})
        assert created.status_code == 200, created.text
        ids = [e["id"] for e in created.json()["exceptions"]]
        late, on_time = ids[:30], ids[30]

        def escalations(eid: str) -> int:
            history = http.get(f"/v1/exceptions/{eid}/history", params={"limit": 200}).json()["items"]
            return sum(1 for h in history if h["action"] == "ESCALATE")

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(receiver.deliveries) < len(late):
            time.sleep(0.1)
        assert len(receiver.deliveries) == len(late)
        time.sleep(1)  # ten more rounds of both schedulers: a second escalation would show now
        assert [escalations(eid) for eid in late] == [1] * len(late)
        assert escalations(on_time) == 0
        assert sorted(p["exception"]["transaction_id"] for p in receiver.deliveries.values()) == sorted(
            f"late-{i}" for i in range(30)
        )
        assert receiver.violations == []
        overdue = http.get("/v1/exceptions", params={"overdue": "true", "limit": 200}).json()["items"]
        assert {e["id"] for e in overdue} == set(late)  # escalated, still overdue until resolved
        assert {e["external_system"] for e in overdue} == {"WEBHOOK"}
