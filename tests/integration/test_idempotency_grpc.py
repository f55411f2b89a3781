"""Idempotency keys over real gRPC (pytest-grpc's threaded server, the app's real interceptor chain
and storage; SQLite always, PostgreSQL when TEST_DATABASE_URL is set). Executions are counted in
the database: CreateException makes a new row every time it runs."""

import uuid
from datetime import timedelta

import grpc
import pytest
import sqlalchemy as sa
from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from server.domain.idempotency import KeyScope, fingerprint
from server.services.clock import utc_now
from server.storage.tables import exceptions as exceptions_table
from server.storage.tables import idempotency_keys
from tests.integration.test_exceptions_grpc import call_error, error_reason

SERVICE = "/reconrouter.exceptions.v1.ExceptionsService/"


def rows_with(app, transaction_id: str) -> int:
    with app.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(exceptions_table.c.transaction_id == transaction_id)
        return conn.execute(query).scalar_one()


def stored_key(app, key: str):
    with app.engine.connect() as conn:
        return conn.execute(sa.select(idempotency_keys).where(idempotency_keys.c.key == key)).first()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create(stub, auth, txn, *headers, role="writer"):
    """(response, initial metadata as a dict) of a CreateException with these extra headers."""
    response, call = stub.CreateException.with_call(
        pb.CreateExceptionRequest(transaction_id=txn), metadata=[*auth(role), *headers]
    )
    return response, dict(call.initial_metadata())


def test_first_call_runs_and_a_repeat_is_replayed(app, stub, auth):
    txn, key = unique("txn"), unique("k")
    first, headers = create(stub, auth, txn, ("x-idempotency-key", key))
    again, replay_headers = create(stub, auth, txn, ("x-idempotency-key", key))
    assert headers["x-idempotency-replayed"] == "false"
    assert replay_headers["x-idempotency-replayed"] == "true"
    assert again == first
    assert rows_with(app, txn) == 1
    assert stored_key(app, key).state == "completed"


def test_idempotency_key_is_the_alternative_header(app, stub, auth):
    txn, key = unique("txn"), unique("k")
    first, _ = create(stub, auth, txn, ("idempotency-key", key))
    again, headers = create(stub, auth, txn, ("x-idempotency-key", key))
    assert headers["x-idempotency-replayed"] == "true" and again == first
    assert rows_with(app, txn) == 1


def test_without_a_key_each_call_runs(app, stub, auth):
    txn = unique("txn")
    _, headers = create(stub, auth, txn)
    create(stub, auth, txn)
    assert rows_with(app, txn) == 2
    assert "x-idempotency-replayed" not in headers


def test_same_key_with_a_different_request_is_422(app, stub, auth):
    txn, key = unique("txn"), unique("k")
    create(stub, auth, txn, ("x-idempotency-key", key))
    err = call_error(
        stub.CreateException,
        pb.CreateExceptionRequest(transaction_id=txn + "-changed"),
        metadata=[*auth("writer"), ("x-idempotency-key", key)],
    )
    assert err.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(err) == "IDEMPOTENCY_KEY_REUSED"
    assert dict(err.trailing_metadata())["x-http-status"] == "422"
    assert rows_with(app, txn + "-changed") == 0


def test_same_key_while_another_replica_runs_it_is_409_then_free_after_the_lock_timeout(app, stub, auth):
    txn, key = unique("txn"), unique("k")
    request = pb.CreateExceptionRequest(transaction_id=txn)
    digest = fingerprint(request.SerializeToString(deterministic=True))
    scope = KeyScope("tenant-a", SERVICE + "CreateException", key)
    # Another replica claimed the key a moment ago and is still working on it.
    app.idempotency.claim(scope, digest, utc_now())
    err = call_error(stub.CreateException, request, metadata=[*auth("writer"), ("x-idempotency-key", key)])
    assert err.code() is grpc.StatusCode.ABORTED and error_reason(err) == "IDEMPOTENCY_KEY_IN_USE"
    assert dict(err.trailing_metadata())["x-http-status"] == "409"
    # That replica died: its claim is older than the lock timeout, so the retry takes the key over.
    stale = utc_now() - app.settings.idempotency_lock_timeout_seconds * timedelta(seconds=1)
    with app.engine.begin() as conn:
        conn.execute(sa.update(idempotency_keys).where(idempotency_keys.c.key == key).values(locked_at=stale))
    _, headers = create(stub, auth, txn, ("x-idempotency-key", key))
    assert headers["x-idempotency-replayed"] == "false" and rows_with(app, txn) == 1


def test_a_failed_request_frees_its_key_for_a_corrected_retry(app, stub, auth):
    key, txn = unique("k"), unique("txn")
    err = call_error(
        stub.CreateException,
        pb.CreateExceptionRequest(transaction_id=txn, currency="DOLLARS"),
        metadata=[*auth("writer"), ("x-idempotency-key", key)],
    )
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert stored_key(app, key) is None
    _, headers = create(stub, auth, txn, ("x-idempotency-key", key))
    assert headers["x-idempotency-replayed"] == "false" and rows_with(app, txn) == 1


@pytest.mark.parametrize("bad", ["", "white space", "k" * 256, "semi;colon"])
def test_a_malformed_key_is_400(app, stub, auth, bad):
    txn = unique("txn")
    err = call_error(
        stub.CreateException,
        pb.CreateExceptionRequest(transaction_id=txn),
        metadata=[*auth("writer"), ("x-idempotency-key", bad)],
    )
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(err) == "INVALID_IDEMPOTENCY_KEY"
    assert rows_with(app, txn) == 0


def test_reads_ignore_keys(stub, auth, make_exception):
    e = make_exception()
    got, call = stub.GetException.with_call(
        pb.GetExceptionRequest(exception_id=e.id),
        metadata=[*auth("reader"), ("x-idempotency-key", "not a key!")],
    )
    assert got == e and "x-idempotency-replayed" not in dict(call.initial_metadata())


def test_the_callback_needs_a_key_and_a_repeated_delivery_is_replayed(stub, auth, make_exception):
    e = make_exception()
    sent = stub.DispatchException(
        pb.DispatchExceptionRequest(exception_id=e.id, target_system="MANUAL"), metadata=auth("dispatcher")
    )
    callback = pb.ReceiveCallbackRequest(
        exception_id=e.id,
        external_system="MANUAL",
        external_issue_id=sent.external_reference,
        status=pb.ASSIGNED,
    )
    err = call_error(stub.ReceiveCallback, callback, metadata=auth("writer"))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT and error_reason(err) == "INVALID_IDEMPOTENCY_KEY"
    delivery = [*auth("writer"), ("idempotency-key", f"delivery-{e.id}")]
    _, first = stub.ReceiveCallback.with_call(callback, metadata=delivery)
    _, second = stub.ReceiveCallback.with_call(callback, metadata=delivery)
    assert dict(first.initial_metadata())["x-idempotency-replayed"] == "false"
    assert dict(second.initial_metadata())["x-idempotency-replayed"] == "true"
    history = stub.ListExceptionHistory(
        pb.ListExceptionHistoryRequest(exception_id=e.id), metadata=auth("reader")
    )
    assert [h.action for h in history.items].count("CALLBACK") == 1


def test_a_failure_between_the_work_and_the_stored_response_commits_nothing(app, stub, auth, monkeypatch):
    txn, key = unique("txn"), unique("k")

    def fail(*args, **kwargs):
        raise ConnectionResetError("injected: the response could not be stored")

    monkeypatch.setattr(app.idempotency, "complete", fail)  # fault injection on the real store
    err = call_error(
        stub.CreateException,
        pb.CreateExceptionRequest(transaction_id=txn),
        metadata=[*auth("writer"), ("x-idempotency-key", key)],
    )
    assert err.code() is grpc.StatusCode.INTERNAL
    assert rows_with(app, txn) == 0 and stored_key(app, key) is None
    monkeypatch.undo()
    _, headers = create(stub, auth, txn, ("x-idempotency-key", key))
    _, again = create(stub, auth, txn, ("x-idempotency-key", key))
    assert (headers["x-idempotency-replayed"], again["x-idempotency-replayed"]) == ("false", "true")
    assert rows_with(app, txn) == 1
