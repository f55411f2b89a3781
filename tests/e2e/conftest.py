"""The real stack: `python -m server serve` + Envoy on free loopback ports, on SQLite and (when
TEST_DATABASE_URL is set) PostgreSQL. One stack per database for the whole session."""

import httpx
import pytest

from server.domain.auth import SCOPES
from tests.support.databases import database_urls
from tests.support.stack import Stack


@pytest.fixture(scope="session", params=database_urls())
def stack(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    with request.param(work) as url, Stack(url, work_dir=work) as running:
        yield running


class Api:
    """An HTTP client for one tenant/token, pointing at Envoy's REST listener."""

    def __init__(self, stack: Stack, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=stack.base_url, headers=headers, timeout=30)

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.fixture(scope="session")
def api_for(stack):
    """api_for(tenant, scopes) -> Api; cached so each (tenant, scopes) makes one token."""
    cache: dict[tuple, Api] = {}

    def make(tenant: str = "acme", scopes: tuple[str, ...] = SCOPES) -> Api:
        key = (tenant, tuple(scopes))
        if key not in cache:
            cache[key] = Api(stack, stack.create_token(tenant, list(scopes)))
        return cache[key]

    yield make
    for api in cache.values():
        api.client.close()


@pytest.fixture(scope="session")
def api(api_for):
    return api_for()


@pytest.fixture
def create(api):
    def make(**body):
        body.setdefault("transaction_id", "txn-e2e")
        response = api.post("/v1/exceptions", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    return make


def error_reason(response: httpx.Response) -> str:
    body = response.json()
    info = [d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert info, body
    assert info[0]["domain"] == "reconrouter"
    return info[0]["reason"]


def violation_fields(response: httpx.Response) -> set[str]:
    body = response.json()
    found = set()
    for detail in body["details"]:
        if detail["@type"].endswith("google.rpc.BadRequest"):
            found |= (
                {v["field"] for v in detail["fieldViolations"]}
                if "fieldViolations" in detail
                else {v["field"] for v in detail["field_violations"]}
            )
    return found
