"""Two replicas on one PostgreSQL database draining one delivery queue (API.md §7): their workers claim
with FOR UPDATE SKIP LOCKED, so every delivery is attempted by one worker at a time, each is received
once, none is lost, and both replicas take part. Some answers are 503s, so that retries of one
delivery may be taken by either replica."""

from __future__ import annotations

import os
from itertools import pairwise

import httpx
import pytest

from tests.support.cluster import Cluster
from tests.support.databases import ENV_VAR, fresh_postgres_url
from tests.support.deliveries import delivery_env, metric, parse_time, scrape, wait_for
from tests.support.standins import Respond, WebhookReceiver

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get(ENV_VAR), reason=f"{ENV_VAR} is not set"),
]
COUNT = 60
REFUSED = 20  # 503 answers: those deliveries are retried, by whichever replica claims them


def test_two_replicas_deliver_each_webhook_exactly_once(tmp_path):
    # At most 4 attempts at once to the host per replica: one replica alone could not take them all.
    env = delivery_env(DELIVERY_MAX_PER_HOST="4", DISPATCH_WAIT_SECONDS="0")
    with (
        fresh_postgres_url(os.environ[ENV_VAR]) as url,
        Cluster(url, 2, env, work_dir=tmp_path) as cluster,
        WebhookReceiver(latency=0.1) as receiver,
    ):
        token = cluster.create_token(
            "drain", ["exceptions:read", "exceptions:write", "exceptions:dispatch", "targets:admin"]
        )
        with httpx.Client(
            base_url=cluster.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as http:
            put = http.put("/v1/targets/WEBHOOK", json={"url": receiver.url, "secret": receiver.secret})
            assert put.status_code == 200, put.text
            receiver.cue(*[Respond(503, {"error": "busy"}) for _ in range(REFUSED)])
            items = [{"transaction_id": f"txn-{i}"} for i in range(COUNT)]
            created = http.post("/v1/exceptions/bulk/create", json={"exceptions": items})
            assert created.status_code == 200, created.text
            ids = [e["id"] for e in created.json()["exceptions"]]
            dispatched = http.post(
                "/v1/exceptions/bulk/dispatch", json={"exception_ids": ids, "target_system": "WEBHOOK"}
            )
            assert dispatched.status_code == 200, dispatched.text
            scheduled = dispatched.json()["failed"]
            assert {f["reason"] for f in scheduled} <= {"DELIVERY_SCHEDULED"}

            def all_delivered():
                page = http.get("/v1/deliveries", params={"state": "DELIVERED", "limit": 200}).json()
                return page["items"] if len(page["items"]) == COUNT else None

            delivered = wait_for(all_delivered, 60, f"{COUNT} deliveries DELIVERED")
            everything = http.get("/v1/deliveries", params={"limit": 200}).json()["items"]
        per_replica = [
            metric(scrape(r.metrics_port), "reconrouter_delivery_attempts_total", target="WEBHOOK")
            for r in cluster.replicas
        ]

    assert len(everything) == COUNT and sorted(d["exception_id"] for d in delivered) == sorted(ids)
    delivery_ids = {d["id"] for d in delivered}
    # Every request carried a known delivery's webhook-id; each delivery was received (2xx) exactly
    # once: the receiver stored one per delivery and saw no repeat of one it had acknowledged.
    seen = [r.headers.get("webhook-id") for r in receiver.requests]
    assert set(seen) == delivery_ids and len(seen) == COUNT + REFUSED, len(seen)
    assert len(receiver.deliveries) == COUNT and receiver.repeats == 0 and receiver.violations == []
    retried = 0
    for delivery in delivered:
        attempts = delivery["attempts"]
        assert [a["outcome"] for a in attempts] == ["RETRYABLE_ERROR"] * (len(attempts) - 1) + ["DELIVERED"]
        assert [a["number"] for a in attempts] == list(range(1, len(attempts) + 1)), delivery
        assert seen.count(delivery["id"]) == len(attempts), delivery  # one request per logged attempt
        retried += len(attempts) > 1
        for earlier, later in pairwise(attempts):  # never two attempts of one delivery at once
            ended = parse_time(earlier["started_at"]).timestamp() + earlier["duration_ms"] / 1000
            assert ended <= parse_time(later["started_at"]).timestamp(), delivery
    assert retried >= 1
    # Both replicas' workers took part; together they made exactly the attempts the log shows.
    assert sum(per_replica) == COUNT + REFUSED and all(n > 0 for n in per_replica), per_replica
