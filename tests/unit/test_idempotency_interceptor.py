"""The idempotency interceptor in the real chain, with a fake handler and the real SQL store on a
throwaway SQLite file. The handler writes a row through the unit of work, so rollbacks are visible."""

import functools
import threading
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import sqlalchemy as sa
from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from server.contract.methods import load_methods
from server.domain.auth import SCOPES, Principal
from server.domain.errors import FailedPrecondition, Unauthenticated
from server.domain.idempotency import KeyScope, Policy, fingerprint
from server.rpc.interceptors.auth import AuthInterceptor
from server.rpc.interceptors.errors import ErrorInterceptor
from server.rpc.interceptors.idempotency import IdempotencyInterceptor
from server.rpc.interceptors.request_id import RequestIdInterceptor
from server.storage.engine import make_engine
from server.storage.idempotency import SqlIdempotencyStore
from server.storage.migrate import upgrade
from server.storage.tables import idempotency_keys, tokens
from server.storage.uow import SqlUnitOfWorkFactory
from tests.unit.fake_grpc import Aborted, run_through
from tests.unit.test_interceptors import details_of

METHODS = load_methods()
SERVICE = "/reconrouter.exceptions.v1.ExceptionsService/"
CREATE, BATCH, GET, CALLBACK = (
    SERVICE + name for name in ("CreateException", "BatchCreateExceptions", "GetException", "ReceiveCallback")
)
HEALTH = "/reconrouter.health.v1.HealthService/Check"
PRINCIPALS = {
    "a": Principal("tenant-a", "tok-a", frozenset(SCOPES)),
    "b": Principal("tenant-b", "tok-b", frozenset(SCOPES)),
}
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def authenticate(token):
    if token not in PRINCIPALS:
        raise Unauthenticated("unknown token")
    return PRINCIPALS[token]


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('idem') / 'unit.db'}"
    upgrade(url)
    engine = make_engine(url, pool_size=4)
    yield engine
    engine.dispose()


class Harness:
    """The chain as the server builds it, a handler that writes one row per execution, and helpers."""

    def __init__(self, engine):
        with engine.begin() as conn:
            conn.execute(idempotency_keys.delete())
            conn.execute(tokens.delete())
        self.engine = engine
        self.uow = SqlUnitOfWorkFactory(engine)
        self.clock = Clock()
        self.store = SqlIdempotencyStore(self.uow, Policy.of_seconds(ttl=3600, lock_timeout=60))
        self.executions = 0
        self.during = None  # called inside the handler, after its write
        self.fail_with = None  # raised by the handler, after its write

    def chain(self, store=None):
        return [
            RequestIdInterceptor(METHODS),
            ErrorInterceptor(lambda exc: None),
            AuthInterceptor(METHODS, authenticate),
            IdempotencyInterceptor(METHODS, store or self.store, self.clock),
        ]

    def handler(self, method, request, context):
        self.executions += 1
        with self.uow(write=True) as u:  # joins the call's transaction, like every service does
            u.tokens.add(
                str(uuid.uuid4()), "tenant-a", f"run-{self.executions}", frozenset(), uuid.uuid4().hex
            )
        if self.during is not None:
            self.during()
        if self.fail_with is not None:
            raise self.fail_with
        if method != CREATE:
            return METHODS[method].response_type()
        return pb.ReconciliationException(id=f"id-{self.executions}", transaction_id=request.transaction_id)

    def call(self, method=CREATE, request=None, *, key=None, alt=None, token="a", store=None):
        """(initial metadata or None, response or Aborted)."""
        metadata = [("authorization", f"Bearer {token}")]
        if key is not None:
            metadata.append(("x-idempotency-key", key))
        if alt is not None:
            metadata.append(("idempotency-key", alt))
        request = request if request is not None else pb.CreateExceptionRequest(transaction_id="t1")
        handler = functools.partial(self.handler, method)
        ctx, run = run_through(self.chain(store), method, handler, request, metadata)
        try:
            result = run()
        except Aborted as aborted:
            result = aborted
        return ctx.initial_metadata, result

    def committed_rows(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(tokens)).scalar_one()

    def stored_keys(self) -> list:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(idempotency_keys)))


@pytest.fixture
def h(engine):
    return Harness(engine)


def error_of(result):
    assert isinstance(result, Aborted), f"expected an error, got {result!r}"
    _, details, trailers = details_of(result.status)
    return result.status.code, details["ErrorInfo"].reason, trailers["x-http-status"]


def test_without_a_key_every_call_runs_and_says_nothing_about_replays(h):
    headers, first = h.call()
    _, second = h.call()
    assert first.id == "id-1" and second.id == "id-2"
    assert h.committed_rows() == 2
    assert "x-idempotency-replayed" not in headers
    assert h.stored_keys() == []  # nothing stored, no hidden body-hash deduplication


def test_the_first_call_runs_and_a_repeat_replays_it_without_running(h):
    headers, first = h.call(key="k-1")
    assert headers["x-idempotency-replayed"] == "false"
    replay_headers, again = h.call(key="k-1")
    assert replay_headers["x-idempotency-replayed"] == "true"
    assert again == first and h.executions == 1 and h.committed_rows() == 1
    assert replay_headers["x-request-id"] != headers["x-request-id"]  # a new call, with its own id
    [row] = h.stored_keys()
    assert (row.state, row.rpc, row.tenant_id, row.response_type) == (
        "completed",
        CREATE,
        "tenant-a",
        "reconrouter.exceptions.v1.ReconciliationException",
    )
    assert row.expires_at == T0 + timedelta(hours=1)


def test_idempotency_key_counts_when_x_idempotency_key_is_absent(h):
    h.call(alt="k-alt")
    headers, _ = h.call(key="k-alt")  # the same key, whichever header carried it
    assert headers["x-idempotency-replayed"] == "true"
    # With both headers, X-Idempotency-Key wins: k-main is new, k-alt is not consulted.
    headers, _ = h.call(key="k-main", alt="k-alt")
    assert headers["x-idempotency-replayed"] == "false" and h.executions == 2


@pytest.mark.parametrize("bad", ["", "has space", "x" * 256, "slash/no"])
def test_a_malformed_key_is_400_and_runs_nothing(h, bad):
    _, result = h.call(key=bad)
    assert error_of(result) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_IDEMPOTENCY_KEY", "400")
    _, result = h.call(alt=bad)
    assert error_of(result)[1] == "INVALID_IDEMPOTENCY_KEY"
    assert h.executions == 0 and h.stored_keys() == []


def test_reads_and_public_rpcs_ignore_keys_even_malformed_ones(h):
    for method, request in ((GET, pb.GetExceptionRequest(exception_id="x")), (HEALTH, None)):
        headers, _ = h.call(method, request, key="not a valid key!")
        assert "x-idempotency-replayed" not in headers
        h.call(method, request, key="k-read")
    assert h.executions == 4 and h.stored_keys() == []


def test_the_callback_route_needs_a_key(h):
    assert {name for name, info in METHODS.items() if info.idempotency_key_required} == {CALLBACK}
    request = pb.ReceiveCallbackRequest(exception_id="e", external_system="MANUAL")
    _, result = h.call(CALLBACK, request)
    assert error_of(result) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_IDEMPOTENCY_KEY", "400")
    headers, _ = h.call(CALLBACK, request, alt="delivery-1")
    assert headers["x-idempotency-replayed"] == "false" and h.executions == 1


def test_the_same_key_with_another_request_is_422_and_runs_nothing(h):
    h.call(key="k-1")
    _, result = h.call(key="k-1", request=pb.CreateExceptionRequest(transaction_id="other"))
    assert error_of(result) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED", "422")
    assert h.executions == 1


def test_keys_are_scoped_to_tenant_and_rpc(h):
    h.call(key="shared")
    headers_b, _ = h.call(key="shared", token="b")
    batch = pb.BatchCreateExceptionsRequest(exceptions=[pb.CreateExceptionRequest(transaction_id="t1")])
    headers_rpc, _ = h.call(BATCH, batch, key="shared")
    assert headers_b["x-idempotency-replayed"] == headers_rpc["x-idempotency-replayed"] == "false"
    assert h.executions == 3


def test_a_repeat_while_the_first_runs_is_409_at_once(h):
    answers = {}

    def repeat_from_another_caller():
        # No waiting on the first call: this thread's answer is read while the first still runs.
        answers["same"] = h.call(key="k-1")
        answers["other"] = h.call(key="k-1", request=pb.CreateExceptionRequest(transaction_id="other"))

    def during():
        thread = threading.Thread(target=repeat_from_another_caller)
        thread.start()
        thread.join()

    h.during = during
    headers, first = h.call(key="k-1")
    assert headers["x-idempotency-replayed"] == "false" and first.id == "id-1"
    assert error_of(answers["same"][1]) == (grpc.StatusCode.ABORTED, "IDEMPOTENCY_KEY_IN_USE", "409")
    assert error_of(answers["other"][1])[1] == "IDEMPOTENCY_KEY_REUSED"
    h.during = None
    headers, again = h.call(key="k-1")
    assert headers["x-idempotency-replayed"] == "true" and again == first and h.executions == 1


@pytest.mark.parametrize(
    "failure, code",
    [
        (FailedPrecondition("refused", reason="INVALID_STATE"), grpc.StatusCode.FAILED_PRECONDITION),
        (RuntimeError("bug"), grpc.StatusCode.INTERNAL),
    ],
)
def test_a_failed_call_rolls_back_and_frees_its_key(h, failure, code):
    h.fail_with = failure
    _, result = h.call(key="k-1")
    assert result.status.code is code
    assert h.committed_rows() == 0 and h.stored_keys() == []
    h.fail_with = None
    # A corrected retry (even with another body) runs with the same key.
    headers, _ = h.call(key="k-1", request=pb.CreateExceptionRequest(transaction_id="fixed"))
    assert headers["x-idempotency-replayed"] == "false" and h.committed_rows() == 1


class CrashBeforeStoring(SqlIdempotencyStore):
    """Fault injection: the process fails after the handler's work, before the response is stored."""

    def complete(self, tx, claim, response, response_type, now):
        raise ConnectionResetError("simulated failure between the work and the stored response")


def test_a_failure_between_the_work_and_the_stored_response_commits_nothing(h):
    crashing = CrashBeforeStoring(h.uow, h.store.policy)
    _, result = h.call(key="k-1", store=crashing)
    assert result.status.code is grpc.StatusCode.INTERNAL
    assert h.executions == 1 and h.committed_rows() == 0 and h.stored_keys() == []
    headers, _ = h.call(key="k-1")
    headers_again, _ = h.call(key="k-1")
    assert (headers["x-idempotency-replayed"], headers_again["x-idempotency-replayed"]) == ("false", "true")
    assert h.committed_rows() == 1  # the retry ran once, and only once


def scope_of(key, method=CREATE, tenant="tenant-a"):
    return KeyScope(tenant, method, key)


def test_an_abandoned_claim_is_taken_over_once_the_lock_timeout_passes(h):
    request = pb.CreateExceptionRequest(transaction_id="t1")
    digest = fingerprint(request.SerializeToString(deterministic=True))
    # What a process that died mid-call leaves behind: a claim nobody will complete.
    h.store.claim(scope_of("k-1"), digest, T0)
    h.clock.now = T0 + timedelta(seconds=59)
    _, result = h.call(key="k-1", request=request)
    assert error_of(result)[1] == "IDEMPOTENCY_KEY_IN_USE"
    h.clock.now = T0 + timedelta(seconds=60)
    headers, _ = h.call(key="k-1", request=request)
    assert headers["x-idempotency-replayed"] == "false" and h.executions == 1
    headers, _ = h.call(key="k-1", request=request)
    assert headers["x-idempotency-replayed"] == "true"


def test_an_expired_key_behaves_as_new(h):
    h.call(key="k-1")
    h.clock.now = T0 + timedelta(hours=1)
    headers, response = h.call(key="k-1", request=pb.CreateExceptionRequest(transaction_id="later"))
    assert headers["x-idempotency-replayed"] == "false" and response.transaction_id == "later"


def test_inside_an_enclosing_transaction_the_key_commits_or_rolls_back_with_it(h):
    # How a /v1/bulk sub-request runs: on the caller's thread, inside the bulk call's transaction.
    with h.uow.outer(write=True):
        headers, _ = h.call(key="sub-1")
        h.fail_with = FailedPrecondition("refused")
        _, failed = h.call(key="sub-2")
        h.fail_with = None
    assert headers["x-idempotency-replayed"] == "false" and isinstance(failed, Aborted)
    assert [row.key for row in h.stored_keys()] == ["sub-1"]  # the failed sub-request freed its key
    assert h.committed_rows() == 1
    with pytest.raises(RuntimeError), h.uow.outer(write=True):
        h.call(key="sub-3")
        raise RuntimeError("the enclosing call fails after the sub-request")
    assert [row.key for row in h.stored_keys()] == ["sub-1"] and h.committed_rows() == 1
