"""server/metrics.py, read back from its own HTTP exposition (prometheus_client's server, as
METRICS_PORT serves it): the series of the escalation backlog, the routing rules cache, inbound
hook posts (a rate-limited one included, which only the RPC layer sees) and attempts by kind."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, start_http_server

from server.metrics import Metrics

JIRA_HOOK = "/reconrouter.hooks.v1.HooksService/ReceiveJiraHook"
LIST = "/reconrouter.exceptions.v1.ExceptionsService/ListExceptions"


@pytest.fixture
def exposed() -> Iterator[tuple[Metrics, str]]:
    registry = CollectorRegistry()
    metrics = Metrics(registry, hook_rpcs={JIRA_HOOK: "JIRA"})
    server, thread = start_http_server(0, "127.0.0.1", registry=registry)
    try:
        yield metrics, f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        thread.join(10)


def value(url: str, name: str, **labels: str) -> float | None:
    """The sample `name{labels}` (labels matched exactly), or None when there is no such series."""
    for line in httpx.get(url).text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match is None or match[1] != name:
            continue
        if dict(re.findall(r'(\w+)="([^"]*)"', match[2] or "")) == labels:
            return float(match[3])
    return None


def test_hook_posts_count_by_system_and_outcome_and_a_rate_limited_hook_call_counts_too(exposed):
    metrics, url = exposed
    metrics.observe_hook("JIRA", "APPLIED")
    metrics.observe_hook("JIRA", "APPLIED")
    metrics.observe_hook("SERVICENOW", "BAD_SIGNATURE")
    metrics.observe_call(JIRA_HOOK, "RESOURCE_EXHAUSTED", "RATE_LIMITED", 0.001, {})
    metrics.observe_call(LIST, "RESOURCE_EXHAUSTED", "RATE_LIMITED", 0.001, {})  # not a hook
    metrics.observe_call(JIRA_HOOK, "UNAUTHENTICATED", "UNAUTHENTICATED", 0.001, {})  # the service counts it
    name = "reconrouter_hook_posts_total"
    assert value(url, name, system="JIRA", outcome="APPLIED") == 2
    assert value(url, name, system="SERVICENOW", outcome="BAD_SIGNATURE") == 1
    assert value(url, name, system="JIRA", outcome="RATE_LIMITED") == 1
    assert value(url, name, system="JIRA", outcome="UNAUTHENTICATED") is None
    assert value(url, "reconrouter_rpc_calls_total", rpc="ReceiveJiraHook", code="RESOURCE_EXHAUSTED") == 1


def test_escalation_backlog_cache_events_and_attempts_by_kind(exposed):
    metrics, url = exposed
    assert value(url, "reconrouter_escalation_backlog") == 0
    metrics.sample_escalation_backlog(7)
    assert value(url, "reconrouter_escalation_backlog") == 7
    metrics.sample_escalation_backlog(2)
    assert value(url, "reconrouter_escalation_backlog") == 2
    for event in ("miss", "hit", "hit", "reload", "eviction"):
        metrics.observe_rules_cache(event)
    cache = "reconrouter_routing_rules_cache_total"
    assert [value(url, cache, event=e) for e in ("hit", "miss", "reload", "eviction")] == [2, 1, 1, 1]
    metrics.observe_attempt("WEBHOOK", "resolution", "DELIVERED", 0.02)
    metrics.observe_attempt("WEBHOOK", "dispatch", "DELIVERED", 0.02)
    metrics.observe_attempt("WEBHOOK", "dispatch", "TIMEOUT", 2.0)
    attempts = "reconrouter_delivery_attempts_total"
    assert value(url, attempts, target="WEBHOOK", kind="resolution", outcome="DELIVERED") == 1
    assert value(url, attempts, target="WEBHOOK", kind="dispatch", outcome="DELIVERED") == 1
    assert value(url, "reconrouter_delivery_attempt_duration_seconds_count", target="WEBHOOK") == 3
