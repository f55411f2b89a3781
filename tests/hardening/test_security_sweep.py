"""The security sweep, generated from the route table (server/contract/routes.py, i.e. the google.api.http
annotations Envoy loads): every REST route x {no token, malformed tokens, a revoked token, a token
without the route's scope, another tenant's ids} over REST through Envoy, and the same scope check for
every route as a /v1/bulk sub-request. A new route is swept as soon as it is annotated; a route whose
path variable has no sample value below fails the sweep instead of escaping it.

Then: no token and no target secret in any response body or header of the sweep, nor in any line the
server or Envoy logged (at DEBUG)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from google.protobuf.descriptor import FieldDescriptor

from server.contract.methods import load_methods
from server.contract.routes import Route, RouteTable
from server.domain.auth import SCOPES
from server.services.tokens import TokenService
from server.storage.engine import make_engine
from server.storage.uow import SqlUnitOfWorkFactory
from tests.support.standins import JiraStandIn, WebhookReceiver

ROUTES: list[Route] = RouteTable(load_methods()).routes
ATTACKS = ("no_token", "malformed_token", "revoked_token", "missing_scope", "other_tenant")
MALFORMED = (
    "",
    "Bearer",
    "Bearer ,",
    "Basic dXNlcjpwYXNz",
    "Token {token}",
    "Bearer {token}x",
    "Bearer {token} {token}",
    "Bearer rr_" + "A" * 43,
    "Bearer {token_id}",  # a token's id is not the token
)
# Body field values that make a request valid apart from whatever the attack is about.
SAMPLE_FIELDS: dict[str, Any] = {
    "target_system": "MANUAL",
    "assignee": "mallory",
    "resolution": "closed by the sweep",
    "external_system": "MANUAL",
    "external_issue_id": "MANUAL-sweep",
    "status": "RESOLVED",
    "transaction_id": "sweep",
    "exceptions": [{"transaction_id": "sweep"}],
    # Routing rules.
    "name": "sweep",
    "priority": 7,
    "conditions": {"sources": ["sweep"]},
    "action": {"target_system": "MANUAL"},
}


@dataclass
class World:
    """Tenant A owns everything the attacks aim at; B is another tenant with every scope."""

    stack: Any
    exception_id: str
    tokens: dict[str, str]  # role -> token: "a", "b", "revoked", "lacks:<scope>"
    secrets: set[str]
    seen: list[httpx.Response] = field(default_factory=list)
    marker: str = ""
    token_id_a: str = ""
    delivery_id: str = ""  # tenant A's delivery (its exception dispatched to MANUAL)
    hook_id: str = ""  # tenant A's JIRA inbound hook
    rule_id: str = ""  # tenant A's routing rule

    def client(self, authorization: str | None) -> httpx.Client:
        headers = {} if authorization is None else {"Authorization": authorization}
        return httpx.Client(
            base_url=self.stack.base_url,
            headers=headers,
            timeout=30,
            event_hooks={"response": [lambda r: (r.read(), self.seen.append(r))]},
        )

    def path_values(self) -> dict[str, str]:
        return {
            "exception_id": self.exception_id,
            "target_system": "WEBHOOK",
            "delivery_id": self.delivery_id,
            # A's own JIRA hook: a token (A's or anyone's) is no substitute for its signature.
            "hook_id": self.hook_id,
            "rule_id": self.rule_id,
        }


def concrete_path(route: Route, values: dict[str, str]) -> str:
    segments = list(route.segments)
    for variable in route.variables:
        name = ".".join(variable.field_path)
        if name not in values:
            pytest.fail(f"{route.binding.path}: no sample value for path variable {name!r}; add one")
        segments[variable.start : variable.end or len(segments)] = [values[name]]
    path = "/" + "/".join(segments)
    return f"{path}:{route.verb}" if route.verb else path


def sample_body(route: Route, exception_id: str, delivery_id: str = "") -> dict[str, Any] | None:
    if not route.binding.body:
        return None
    bound = {".".join(v.field_path) for v in route.variables}
    body: dict[str, Any] = {}
    for f in route.method.request_type.DESCRIPTOR.fields:
        if f.name in bound:
            continue
        # Ids name tenant A's resources: its delivery for delivery ids, its exception otherwise.
        sample_id = delivery_id if f.name.startswith("delivery_id") else exception_id
        if f.name in SAMPLE_FIELDS:
            body[f.name] = SAMPLE_FIELDS[f.name]
        elif f.name.endswith("_ids") and f.type == FieldDescriptor.TYPE_STRING:
            body[f.name] = [sample_id]
        elif f.name.endswith("_id") and f.type == FieldDescriptor.TYPE_STRING:
            body[f.name] = sample_id
    if route.method.full_name.endswith("/BatchJson"):  # /v1/bulk: read A's exception inside
        body["requests"] = [{"url": f"/v1/exceptions/{exception_id}"}]
    return body


def call(world: World, route: Route, authorization: str | None) -> httpx.Response:
    values = world.path_values()
    headers = {"X-Idempotency-Key": f"sweep-{uuid.uuid4().hex}"} if route.method.mutating else {}
    with world.client(authorization) as client:
        return client.request(
            route.binding.verb,
            concrete_path(route, values),
            json=sample_body(route, world.exception_id, world.delivery_id),
            headers=headers,
        )


def assert_error(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    reasons = [d.get("reason") for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert reasons == [reason], body
    assert "Traceback" not in response.text


@pytest.fixture(scope="module")
def world(hard_stack):
    engine = make_engine(hard_stack.database_url, pool_size=1)
    tokens_service = TokenService(SqlUnitOfWorkFactory(engine))
    tenant_a, tenant_b = f"sweep-a-{uuid.uuid4().hex[:8]}", f"sweep-b-{uuid.uuid4().hex[:8]}"
    a_id, a_token = tokens_service.create(tenant_a, list(SCOPES))
    tokens = {"a": a_token}
    tokens["b"] = tokens_service.create(tenant_b, list(SCOPES))[1]
    revoked_id, tokens["revoked"] = tokens_service.create(tenant_a, list(SCOPES))
    tokens_service.revoke(revoked_id)
    for scope in SCOPES:
        tokens[f"lacks:{scope}"] = tokens_service.create(tenant_a, [s for s in SCOPES if s != scope])[1]
    engine.dispose()
    with WebhookReceiver() as webhook, JiraStandIn(token=uuid.uuid4().hex) as jira:
        inbound_secret = f"inbound-{uuid.uuid4().hex}"
        world = World(hard_stack, "", tokens, {*tokens.values(), webhook.secret, jira.token, inbound_secret})
        world.token_id_a = a_id
        world.marker = f"sweep-marker-{uuid.uuid4().hex}"
        with world.client(f"Bearer {tokens['a']}") as a:
            created = a.post("/v1/exceptions", json={"transaction_id": world.marker, "metadata": {"m": "x"}})
            assert created.status_code == 200, created.text
            world.exception_id = created.json()["id"]
            for target, body in (
                ("WEBHOOK", {"url": webhook.url, "secret": webhook.secret}),
                (
                    "JIRA",
                    {
                        "base_url": jira.url,
                        "email": jira.email,
                        "api_token": jira.token,
                        "project_key": "OPS",
                        "inbound_secret": inbound_secret,
                    },
                ),
            ):
                put = a.put(f"/v1/targets/{target}", json=body)
                assert put.status_code == 200, put.text
                if target == "JIRA":
                    world.hook_id = put.json()["inbound_path"].rsplit("/", 1)[1]
            # A delivery of A's, for the delivery routes (MANUAL: delivered at once, no target called).
            dispatched = a.post(
                f"/v1/exceptions/{world.exception_id}/dispatch", json={"target_system": "MANUAL"}
            )
            assert dispatched.status_code == 200, dispatched.text
            world.delivery_id = dispatched.json()["delivery_id"]
            # A routing rule of A's, for the rule routes (routes nothing the sweep dispatches).
            rule = a.post(
                "/v1/routing-rules",
                json={
                    "name": "sweep",
                    "priority": 1,
                    "conditions": {"sources": ["sweep-never"]},
                    "action": {"target_system": "MANUAL"},
                },
            )
            assert rule.status_code == 200, rule.text
            world.rule_id = rule.json()["id"]
        before = snapshot(world)
        yield world
        # Nothing any attack did changed tenant A's data, and no target was called.
        assert snapshot(world) == before
        assert webhook.requests == [] and jira.requests == []


def snapshot(world: World) -> Any:
    with world.client(f"Bearer {world.tokens['a']}") as a:
        items = a.get("/v1/exceptions", params={"limit": 200}).json()["items"]
        history = [a.get(f"/v1/exceptions/{e['id']}/history").json() for e in items]
        targets = a.get("/v1/targets").json()
        deliveries = a.get("/v1/deliveries", params={"limit": 200}).json()["items"]
        rules = a.get("/v1/routing-rules").json()
        policy = a.get("/v1/sla-policy").json()
    return items, history, targets, deliveries, rules, policy


def route_id(route: Route) -> str:
    return f"{route.binding.verb} {route.binding.path}"


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
@pytest.mark.parametrize("attack", ATTACKS)
def test_route_refuses_attack(world, route, attack):
    info = route.method
    if attack == "no_token":
        response = call(world, route, None)
    elif attack == "revoked_token":
        response = call(world, route, f"Bearer {world.tokens['revoked']}")
    elif attack == "malformed_token":
        for template in MALFORMED:
            response = call(world, route, template.format(token=world.tokens["a"], token_id=world.token_id_a))
            if not info.public:
                assert_error(response, 401, "UNAUTHENTICATED")
            else:
                assert response.status_code == 200, (template, response.text)
        return
    elif attack == "missing_scope":
        if not info.required_scope:
            pytest.skip("no scope of its own (public, or token_required: /v1/bulk checks each sub-request)")
        response = call(world, route, f"Bearer {world.tokens['lacks:' + info.required_scope]}")
        assert_error(response, 403, "PERMISSION_DENIED")
        return
    else:
        response = call(world, route, f"Bearer {world.tokens['b']}")
        assert world.marker not in response.text and world.exception_id not in response.headers.values()
        other_tenant_expectations(world, route, response)
        return
    if info.public:
        assert response.status_code == 200, response.text
    else:
        assert_error(response, 401, "UNAUTHENTICATED")


def other_tenant_expectations(world: World, route: Route, response: httpx.Response) -> None:
    """A's resources are invisible to B: a path naming one is 404, ids in a body fail one by one as
    'not found', a /v1/bulk sub-request is 404; anything else B does touches only B's own data
    (A's state is compared before and after the whole sweep)."""
    bound = {".".join(v.field_path) for v in route.variables}
    body = sample_body(route, world.exception_id, world.delivery_id) or {}
    if route.method.public:
        assert response.status_code == 200
    elif route.method.signed_hook:
        assert_error(response, 401, "UNAUTHENTICATED")  # B's token does not sign A's hook
    elif (
        "exception_id" in bound
        or "delivery_id" in bound
        or "rule_id" in bound
        or ("target_system" in bound and route.binding.verb in ("GET", "DELETE"))
    ):
        assert_error(response, 404, "NOT_FOUND")
    elif any(isinstance(v, list) and world.exception_id in v for v in body.values()):
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["succeeded"] == []
        assert result["failed"] == [
            {"exception_id": world.exception_id, "error": "exception not found", "reason": "NOT_FOUND"}
        ]
    elif any(isinstance(v, list) and world.delivery_id in v for v in body.values()):
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["succeeded"] == []
        assert result["failed"] == [
            {"delivery_id": world.delivery_id, "error": "delivery not found", "reason": "NOT_FOUND"}
        ]
    elif route.method.full_name.endswith("/BatchJson"):
        [item] = response.json()
        assert item["status"] == 404 and item["contents"]["details"][0]["reason"] == "NOT_FOUND"
    else:
        assert response.status_code < 500, response.text


@pytest.mark.parametrize("route", [r for r in ROUTES if r.method.required_scope], ids=route_id)
def test_bulk_sub_request_needs_the_routes_scope_and_cannot_bring_a_token(world, route):
    """The same scope check for the route as a /v1/bulk sub-request; an Authorization header on the
    sub-request (here: tenant A's token with every scope) changes nothing."""
    sub: dict[str, Any] = {
        "url": concrete_path(route, world.path_values()),
        "method": route.binding.verb,
        "headers": {"Authorization": f"Bearer {world.tokens['a']}"},
    }
    body = sample_body(route, world.exception_id, world.delivery_id)
    if body is not None:
        sub["data"] = json.dumps(body)
    with world.client(f"Bearer {world.tokens['lacks:' + route.method.required_scope]}") as client:
        response = client.post("/v1/bulk", json={"requests": [sub]})
    assert response.status_code == 200, response.text
    [item] = response.json()
    assert item["status"] == 403, item
    assert item["contents"]["details"][0]["reason"] == "PERMISSION_DENIED"


def test_no_token_or_secret_in_any_response_or_log_line(world):
    """Every response the sweep above saw (file order), plus a call per route with the tokens that
    cannot change tenant A's data (so the test also stands alone), and both processes' logs."""
    for route in ROUTES:
        for role in ("b", "revoked"):
            call(world, route, f"Bearer {world.tokens[role]}")
    assert len(world.seen) >= len(ROUTES) * 2
    leaks = []
    for response in world.seen:
        text = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        leaks += [(response.request.url.path, s[:6]) for s in world.secrets if s in text]
    assert leaks == []
    for name, log in (("server", world.stack.logs()), ("envoy", world.stack.envoy_logs())):
        assert log.strip() or name == "envoy"
        leaked = [s[:6] + "..." for s in world.secrets if s in log]
        assert leaked == [], f"{name} log holds secrets: {leaked}"
    # The server logged at DEBUG throughout, so the grep had lines to search.
    assert world.stack.logs().count("\n") > len(world.seen)
