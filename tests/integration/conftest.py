"""pytest-grpc fixtures wired to the real application: interceptors, servicers and storage."""

import pytest
from reconrouter.exceptions.v1 import exceptions_pb2 as pb
from reconrouter.exceptions.v1 import exceptions_pb2_grpc

from server.bootstrap import build_app
from server.config import Settings
from server.domain.auth import SCOPES
from server.rpc.server import add_servicers
from server.storage.migrate import upgrade
from tests.support.databases import database_urls

ROLES = {
    "writer": ["exceptions:read", "exceptions:write"],
    "reader": ["exceptions:read"],
    "dispatcher": ["exceptions:read", "exceptions:dispatch"],
    "admin": list(SCOPES),
}

# Delivery settings that keep tests quick: retries within a second, idle workers look every 0.2 s,
# one attempt ends after 2 s, and a dispatch waits up to 5 s for a first outcome (a healthy loopback
# stand-in answers well within it). Targets on 127.0.0.1 (the stand-ins) are allowed.
FAST_DELIVERY = dict(
    dispatch_allow_private_networks=True,
    delivery_retry_base_seconds=0.2,
    delivery_poll_seconds=0.2,
    delivery_attempt_timeout=2.0,
    delivery_lease_margin_seconds=2.0,
    dispatch_wait_seconds=5.0,
)


@pytest.fixture(scope="module", params=database_urls())
def app(request, tmp_path_factory):
    with request.param(tmp_path_factory.mktemp("db")) as url:
        upgrade(url)
        application = build_app(Settings(database_url=url, **FAST_DELIVERY))
        # Dispatches through the pytest-grpc server are really delivered (docs/delivery.md).
        application.start_delivery_worker()
        yield application
        application.stop_delivery_worker(0)
        application.close()


@pytest.fixture(scope="module")
def grpc_add_to_server():
    return add_servicers


@pytest.fixture(scope="module")
def grpc_servicer(app):
    return app.servicers()


@pytest.fixture(scope="module")
def grpc_interceptors(app):
    return app.interceptors()


@pytest.fixture(scope="module")
def grpc_stub_cls():
    return exceptions_pb2_grpc.ExceptionsServiceStub


@pytest.fixture(scope="module")
def stub(grpc_stub):
    return grpc_stub


@pytest.fixture(scope="module")
def auth(app):
    """auth("writer") -> metadata with a bearer token of that role; "other" is another tenant."""
    cache: dict[str, list] = {}

    def metadata(role: str) -> list[tuple[str, str]]:
        if role not in cache:
            tenant = "tenant-b" if role == "other" else ("tenant-p" if role == "pager" else "tenant-a")
            scopes = list(SCOPES) if role in ("other", "pager") else ROLES[role]
            cache[role] = [("authorization", f"Bearer {app.tokens.create(tenant, scopes)[1]}")]
        return cache[role]

    return metadata


@pytest.fixture
def make_exception(stub, auth):
    def make(**fields):
        fields.setdefault("transaction_id", "txn")
        return stub.CreateException(pb.CreateExceptionRequest(**fields), metadata=auth("writer"))

    return make
