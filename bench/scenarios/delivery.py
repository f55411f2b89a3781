"""Scenario 8, durable delivery (API.md §7, docs/delivery.md): how fast the delivery workers drain a
queue, what a delivery costs the server, and whether trickling deliveries slow other tenants.

- drain: the tenant's WEBHOOK target (the stand-in answering in `plan.drain_latency` s) is paused
  (POST /v1/targets/WEBHOOK/pause) and `plan.drain_items` fresh exceptions are dispatched to it in
  bulk calls of 100 (`delivery_enqueue_paused_rest`: the calls record their deliveries and answer
  at once, every item DELIVERY_SCHEDULED; DISPATCH_WAIT_SECONDS=0 on this stack). Then the target is
  resumed and `delivery_drain_<ms>ms_rest` measures the wall time from the resume until the stand-in
  has every delivery and the server lists none PENDING or IN_FLIGHT (GET /v1/deliveries?state=...).
  A "request" of that row is one delivery: req/s = items/s = deliveries per second; p50/p99 = time
  from the resume until the stand-in answered each delivery; server CPU and DB statements per
  delivery come from the same /proc and Prometheus samples as every other row, taken around the
  drain. The settings cap it at min(DELIVERY_CONCURRENCY, DELIVERY_MAX_PER_HOST,
  DELIVERY_MAX_PER_TENANT) / latency per server process (one target host, one tenant, WORKERS=1):
  the ratio to that limit is in the ratios.
- trickling: `delivery_manual_quiet_rest` and `delivery_manual_trickling_rest` are the same
  100-item first dispatch to MANUAL by the tenant `bench` (one caller, fresh exceptions), measured
  on one stack without and then with `plan.trickle_deliveries` deliveries of another tenant in
  flight to a webhook stand-in that answers one byte a second (DELIVERY_ATTEMPT_TIMEOUT
  `plan.trickle_timeout` cuts each attempt; retries come within 1 s). That stack lets all of them be
  in flight at once (DELIVERY_CONCURRENCY, DELIVERY_MAX_PER_HOST and DELIVERY_MAX_PER_TENANT = their
  number) and never opens the circuit; how many were in flight during the measured calls is counted
  at the stand-in and printed with the results.

`python -m bench delivery` runs this scenario alone.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from bench.drivers import LoadRun, RestClient
from bench.harness import Bench, Target
from bench.scenarios.dispatch import BATCH, DISPATCH_CONNECTIONS, REST_PATH, fresh_batches, rest_body
from bench.scenarios.dispatch import rest_dispatcher as dispatcher
from server.config import Settings
from tests.support.standins import Trickle, WebhookReceiver

SCENARIO = "8 delivery"
OTHER_TENANT = "bench-trickle"
POLL_SECONDS = 0.02


class ArrivalHook(WebhookReceiver):
    """The webhook stand-in, noting when it answered each delivery (by X-Idempotency-Key) first."""

    def __init__(self, **kwargs: Any) -> None:
        self.arrivals: dict[str, float] = {}
        super().__init__(**kwargs)

    def handle(self, method, path, query, headers, body):
        answer = super().handle(method, path, query, headers, body)
        key = headers.get("x-idempotency-key")
        if answer[0] == 200 and key:
            self.arrivals.setdefault(key, time.perf_counter())
        return answer


class TrickleHook(WebhookReceiver):
    """Answers every request one byte a second (tests/support/standins.py Trickle) and notes when
    each arrived: an attempt is in flight from its arrival until the server's deadline cuts it."""

    def __init__(self, **kwargs: Any) -> None:
        self.arrived: list[float] = []
        super().__init__(**kwargs)

    def handle(self, method, path, query, headers, body):
        self.arrived.append(time.perf_counter())
        return super().handle(method, path, query, headers, body)

    def _take_cue(self, method: str, path: str):
        return super()._take_cue(method, path) or Trickle()

    def in_flight(self, at: float, deadline: float) -> int:
        return sum(1 for t in list(self.arrived) if at - deadline < t <= at)


def server_settings(env: dict[str, str]) -> Settings:
    """The settings the stack's server runs with (its environment: ours, the harness's, env)."""
    return Settings.from_env({**os.environ, "WORKERS": "1", **env})


def _check(response, what: str) -> Any:
    if response.status_code != 200:
        raise RuntimeError(f"{what} answered {response.status_code}: {response.text[:500]}")
    return response.json()


def _configure_webhook(client, hook: WebhookReceiver) -> None:
    _check(client.put("/v1/targets/WEBHOOK", json={"url": hook.url, "secret": hook.secret}), "PUT WEBHOOK")


def run(bench: Bench) -> None:
    drain(bench)
    trickling(bench)


# -- the drain ------------------------------------------------------------------------------------


def _enqueue(target: Target):
    """A 100-item dispatch to the paused target: every item recorded and answered DELIVERY_SCHEDULED."""
    headers = {"Authorization": f"Bearer {target.token}"}

    def call(client: RestClient, ids: list[str]) -> None:
        status, _, body = client.request("POST", REST_PATH, headers, rest_body(ids, "WEBHOOK"))
        if status != 200:
            raise RuntimeError(f"bulk dispatch answered {status}: {body[:300]!r}")
        failed = json.loads(body)["failed"]
        scheduled = sum(1 for f in failed if f.get("reason") == "DELIVERY_SCHEDULED")
        if scheduled != len(ids):
            raise RuntimeError(f"{len(ids) - scheduled} items not DELIVERY_SCHEDULED: {failed[:3]}")

    return call


def _listed(client, state: str) -> int:
    """1 when the tenant has a delivery in `state`, else 0 (GET /v1/deliveries?state=...&limit=1)."""
    page = _check(client.get("/v1/deliveries", params={"state": state, "limit": 1}), f"list {state}")
    return len(page.get("items", []))


def drain(bench: Bench) -> None:
    plan = bench.plan
    ms = round(plan.drain_latency * 1000)
    name = f"delivery_drain_{ms}ms_rest"
    env = {"DISPATCH_WAIT_SECONDS": "0"}
    settings = server_settings(env)
    lanes = min(
        settings.delivery_concurrency, settings.delivery_max_per_host, settings.delivery_max_per_tenant
    )
    limit = lanes / plan.drain_latency
    count = max(BATCH, plan.drain_items // BATCH * BATCH)
    with (
        ArrivalHook(latency=plan.drain_latency) as hook,
        bench.stack("delivery-drain", env=env) as target,
        target.client() as client,
    ):
        _configure_webhook(client, hook)
        paused = _check(client.post("/v1/targets/WEBHOOK/pause", json={}), "pause WEBHOOK")
        if not paused.get("paused"):
            raise RuntimeError(f"pause answered without paused: true: {paused}")
        batches = fresh_batches(target, count // BATCH, "drain")
        bench.measure_calls(
            SCENARIO,
            "delivery_enqueue_paused_rest",
            target,
            "rest",
            prepare=lambda: batches,
            call=_enqueue(target),
            connections=DISPATCH_CONNECTIONS,
            items_per_request=BATCH,
            repeats=1,
            note=f"{count} fresh exceptions, 100 per call, to the paused webhook: deliveries recorded, "
            "every item answered DELIVERY_SCHEDULED at once (DISPATCH_WAIT_SECONDS=0)",
        )
        if hook.arrivals or not _listed(client, "PENDING"):
            raise RuntimeError(f"paused, yet {len(hook.arrivals)} deliveries arrived or none is PENDING")
        timing: dict[str, float] = {}

        def resume_and_wait(_: Any) -> LoadRun:
            started = time.perf_counter()
            _check(client.post("/v1/targets/WEBHOOK/resume", json={}), "resume WEBHOOK")
            give_up = started + 60 + count * 0.05
            while len(hook.arrivals) < count or _listed(client, "PENDING") or _listed(client, "IN_FLIGHT"):
                if time.perf_counter() > give_up:
                    raise RuntimeError(
                        f"the drain stalled: {len(hook.arrivals)} of {count} deliveries arrived in "
                        f"{give_up - started:.0f} s"
                    )
                time.sleep(POLL_SECONDS)
            seconds = time.perf_counter() - started
            arrivals = sorted(hook.arrivals.values())
            timing.update(first=arrivals[0] - started, last=arrivals[-1] - started, seconds=seconds)
            failed = _listed(client, "FAILED")  # 0 or 1: any FAILED one makes the row an error
            return LoadRun("python", len(arrivals), failed, seconds, [(t - started) * 1000 for t in arrivals])

        record = bench.measure_span(
            SCENARIO,
            name,
            target,
            "rest",
            prepare=lambda: None,
            run=resume_and_wait,
            repeats=1,
            unit="delivery",
            note=f"{count} queued deliveries drained after resume, stand-in answering in {ms} ms: a "
            "request is one delivery; p50/p99 = resume to each delivery answered; limit "
            f"min({settings.delivery_concurrency}, {settings.delivery_max_per_host}, "
            f"{settings.delivery_max_per_tenant}) / {plan.drain_latency} s = {limit:,.0f} items/s "
            "(WORKERS=1)",
        )
        if hook.violations:
            raise RuntimeError(f"the webhook stand-in saw malformed deliveries: {hook.violations[:3]}")
        repeats = hook.repeats
    rate = record["rps"] or 0.0
    bench.derived(
        f"delivery drain at {ms} ms / limit min(concurrency, per host, per tenant) / latency (items/s)",
        rate / limit,
        f"{name}.rps",
        f"min({settings.delivery_concurrency}, {settings.delivery_max_per_host}, "
        f"{settings.delivery_max_per_tenant}) / {plan.drain_latency} = {limit:g}",
        "how close the workers come to the rate their bulkheads and the target's latency allow",
    )
    span = timing["last"] - timing["first"]
    steady = (count - 1) / span if span > 0 else float("nan")
    bench.extras.append(
        {
            "title": "Delivery drain (scenario 8)",
            "data": {
                "deliveries": count,
                "latency_s": plan.drain_latency,
                "concurrency": settings.delivery_concurrency,
                "max_per_host": settings.delivery_max_per_host,
                "max_per_tenant": settings.delivery_max_per_tenant,
                "poll_seconds": settings.delivery_poll_seconds,
                "limit_items_per_s": limit,
                "drain_seconds": timing["seconds"],
                "first_after_resume_s": timing["first"],
                "last_after_resume_s": timing["last"],
                "steady_items_per_s": steady,
                "repeats_at_stand_in": repeats,
            },
            "lines": [
                f"- {count} deliveries queued behind the paused webhook, stand-in answering in {ms} ms, "
                f"WORKERS=1: drained in {timing['seconds']:.2f} s after the resume, "
                f"{rate:,.1f} items/s = {rate / limit:.2f} of the limit min(DELIVERY_CONCURRENCY "
                f"{settings.delivery_concurrency}, DELIVERY_MAX_PER_HOST {settings.delivery_max_per_host}, "
                f"DELIVERY_MAX_PER_TENANT {settings.delivery_max_per_tenant}) / latency = "
                f"{limit:,.0f} items/s.",
                f"- First delivery answered {timing['first'] * 1000:,.0f} ms after the resume (a resume "
                f"wakes the workers of the process that served it; others poll every "
                f"{settings.delivery_poll_seconds:g} s); from the first to the last, {steady:,.1f} items/s.",
                f"- Server CPU per delivery {1000 * (record['server_cpu_s_per_req'] or 0):.2f} ms, DB "
                f"statements per delivery {record['db_statements_per_req']}; deliveries the stand-in got "
                f"more than once: {repeats}.",
            ],
        }
    )


# -- other tenants' dispatches while deliveries trickle -------------------------------------------


def trickling(bench: Bench) -> None:
    plan = bench.plan
    n, timeout = plan.trickle_deliveries, plan.trickle_timeout
    env = {
        "DISPATCH_WAIT_SECONDS": "0",  # the other tenant's dispatch of n trickling items answers at once
        "DELIVERY_ATTEMPT_TIMEOUT": f"{timeout:g}",
        "DELIVERY_CONCURRENCY": str(n),
        "DELIVERY_MAX_PER_HOST": str(n),
        "DELIVERY_MAX_PER_TENANT": str(n),
        "DELIVERY_RETRY_BASE_SECONDS": "0.2",
        "DELIVERY_RETRY_MAX_WAIT_SECONDS": "1",
        "DISPATCH_BREAKER_FAILURES": "1000000",
        "SHUTDOWN_GRACE_SECONDS": "1",
    }
    quiet, loaded = "delivery_manual_quiet_rest", "delivery_manual_trickling_rest"
    with TrickleHook() as hook, bench.stack("delivery-trickle", env=env) as target:
        assert target.new_token is not None
        other = target.new_token(OTHER_TENANT)
        # Everything the measured calls dispatch is created first, before any delivery trickles.
        batches = {row: fresh_batches(target, plan.trickle_calls, row) for row in (quiet, loaded)}
        window: dict[str, float] = {}

        def measure(row: str, note: str) -> None:
            window["start"] = time.perf_counter()
            bench.measure_calls(
                SCENARIO,
                row,
                target,
                "rest",
                prepare=lambda: batches[row],
                call=dispatcher(target, "MANUAL"),
                connections=1,
                items_per_request=BATCH,
                repeats=1,
                note=note,
            )
            window["end"] = time.perf_counter()

        measure(
            quiet,
            "one caller, 100 fresh exceptions per call to MANUAL; no delivery in flight (same stack "
            f"as `{loaded}`)",
        )
        with target.client() as client:
            client.headers["Authorization"] = f"Bearer {other}"
            _configure_webhook(client, hook)
            created = _check(
                client.post(
                    "/v1/exceptions/bulk/create",
                    json={
                        "exceptions": [
                            {"transaction_id": f"trickle-{i}", "amount": "1.00", "currency": "USD"}
                            for i in range(n)
                        ]
                    },
                ),
                "bulk create",
            )
            ids = [e["id"] for e in created["exceptions"]]
            _check(
                client.post(REST_PATH, json={"exception_ids": ids, "target_system": "WEBHOOK"}), "dispatch"
            )
            give_up = time.perf_counter() + 30
            while hook.in_flight(time.perf_counter(), timeout) < n:
                if time.perf_counter() > give_up:
                    raise RuntimeError(f"only {len(hook.arrived)} of {n} trickling deliveries started")
                time.sleep(POLL_SECONDS)
            measure(
                loaded,
                f"the same, while {n} deliveries of another tenant trickle (one byte a second, cut at "
                f"{timeout:g} s): DELIVERY_CONCURRENCY = DELIVERY_MAX_PER_HOST = "
                f"DELIVERY_MAX_PER_TENANT = {n}",
            )
            samples = [
                hook.in_flight(t, timeout) for t in _between(window["start"], window["end"], POLL_SECONDS)
            ]
            _check(client.post("/v1/targets/WEBHOOK/pause", json={}), "pause WEBHOOK")
        if hook.violations:
            raise RuntimeError(f"the trickling stand-in saw malformed deliveries: {hook.violations[:3]}")
    for stat in ("p50_ms", "p99_ms"):
        bench.ratio(
            f"MANUAL 100-item dispatch with {n} deliveries trickling / without ({stat[:3]})",
            loaded,
            quiet,
            stat,
            "whether other tenants' trickling deliveries slow a dispatch (1.0: not at all)",
        )
    bench.extras.append(
        {
            "title": "Dispatch while deliveries trickle (scenario 8)",
            "data": {
                "trickling": n,
                "timeout_s": timeout,
                "in_flight_min": min(samples),
                "in_flight_max": max(samples),
            },
            "lines": [
                f"- Trickling attempts in flight while `{loaded}` ran (counted at the stand-in every "
                f"{POLL_SECONDS * 1000:.0f} ms: requests that arrived in the last {timeout:g} s): "
                f"min {min(samples)}, max {max(samples)} of {n}.",
            ],
        }
    )


def _between(start: float, end: float, step: float) -> list[float]:
    points, t = [], start
    while t <= end:
        points.append(t)
        t += step
    return points or [start]
