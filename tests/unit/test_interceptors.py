import json
import logging

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from server.contract.methods import load_methods
from server.domain.auth import Principal
from server.domain.errors import FailedPrecondition, InvalidArgument, Unauthenticated, Unavailable
from server.rpc import call_state
from server.rpc.interceptors.auth import AuthInterceptor
from server.rpc.interceptors.errors import ErrorInterceptor
from server.rpc.interceptors.request_id import RequestIdInterceptor
from tests.unit.fake_grpc import Aborted, run_through

METHODS = load_methods()
GET = "/reconrouter.exceptions.v1.ExceptionsService/GetException"
DISPATCH = "/reconrouter.exceptions.v1.ExceptionsService/BulkDispatchExceptions"
HEALTH = "/reconrouter.health.v1.HealthService/Check"
TOKENS = {"good": Principal("t1", "tok-1", frozenset({"exceptions:read"}))}


def authenticate(token):
    if token not in TOKENS:
        raise Unauthenticated("the token is unknown or revoked")
    return TOKENS[token]


def chain():
    return [
        RequestIdInterceptor(METHODS),
        ErrorInterceptor(lambda exc: None),
        AuthInterceptor(METHODS, authenticate),
    ]


def details_of(status):
    trailers = dict(status.trailing_metadata)
    proto = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    unpacked = {}
    for any_ in proto.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RequestInfo):
            if any_.Is(cls.DESCRIPTOR):
                message = cls()
                any_.Unpack(message)
                unpacked[cls.__name__] = message
    return proto, unpacked, trailers


def test_request_id_is_kept_echoed_once_and_generated_when_absent():
    seen = []
    ctx, call = run_through(
        chain(),
        HEALTH,
        lambda r, c: seen.append(call_state.current().request_id) or "ok",
        metadata=[("x-request-id", "abc-123")],
    )
    assert call() == "ok"
    assert ctx.initial_metadata == {"x-request-id": "abc-123"}
    ctx, call = run_through(chain(), HEALTH, lambda r, c: "ok", metadata=[("x-request-id", "bad id\n")])
    call()
    assert len(ctx.initial_metadata["x-request-id"]) == 36  # replaced by a fresh UUID


def test_missing_token_is_401_with_error_info_and_request_id():
    ctx, call = run_through(
        chain(), GET, lambda r, c: pytest.fail("handler ran"), metadata=[("x-request-id", "r-1")]
    )
    with pytest.raises(Aborted) as err:
        call()
    status = err.value.status
    assert status.code is grpc.StatusCode.UNAUTHENTICATED
    proto, details, trailers = details_of(status)
    assert proto.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert details["ErrorInfo"].reason == "UNAUTHENTICATED"
    assert details["ErrorInfo"].domain == "reconrouter"
    assert details["RequestInfo"].request_id == "r-1"
    assert trailers["x-http-status"] == "401"
    assert ctx.initial_metadata is None  # errors travel in trailers only


@pytest.mark.parametrize("header", ["good", "Basic good", "Bearer", "Bearer unknown"])
def test_malformed_or_unknown_tokens_are_refused(header):
    _, call = run_through(chain(), GET, lambda r, c: "ran", metadata=[("authorization", header)])
    with pytest.raises(Aborted) as err:
        call()
    assert err.value.status.code is grpc.StatusCode.UNAUTHENTICATED


def test_scope_is_read_from_the_proto_and_enforced():
    _, call = run_through(
        chain(),
        GET,
        lambda r, c: call_state.principal().tenant_id,
        metadata=[("authorization", "Bearer good")],
    )
    assert call() == "t1"
    _, call = run_through(chain(), DISPATCH, lambda r, c: "ran", metadata=[("authorization", "bearer good")])
    with pytest.raises(Aborted) as err:
        call()
    assert err.value.status.code is grpc.StatusCode.PERMISSION_DENIED
    assert "exceptions:dispatch" in err.value.status.details


def test_health_needs_no_token():
    _, call = run_through(chain(), HEALTH, lambda r, c: "ok")
    assert call() == "ok"


def test_business_refusal_maps_to_422_and_validation_carries_field_violations():
    def refuse(r, c):
        raise FailedPrecondition("exception is resolved", reason="INVALID_STATE")

    _, call = run_through(chain(), HEALTH, refuse)
    with pytest.raises(Aborted) as err:
        call()
    _, details, trailers = details_of(err.value.status)
    assert err.value.status.code is grpc.StatusCode.FAILED_PRECONDITION
    assert (details["ErrorInfo"].reason, trailers["x-http-status"]) == ("INVALID_STATE", "422")

    def invalid(r, c):
        raise InvalidArgument.field("limit", "must be between 1 and 200")

    _, call = run_through(chain(), HEALTH, invalid)
    with pytest.raises(Aborted) as err:
        call()
    _, details, trailers = details_of(err.value.status)
    assert details["BadRequest"].field_violations[0].field == "limit"
    assert trailers["x-http-status"] == "400"


def test_unexpected_errors_become_internal_without_leaking(caplog):
    def crash(r, c):
        raise RuntimeError("SELECT secret FROM tokens")

    _, call = run_through(chain(), HEALTH, crash)
    with caplog.at_level(logging.ERROR), pytest.raises(Aborted) as err:
        call()
    assert err.value.status.code is grpc.StatusCode.INTERNAL
    assert "SELECT" not in err.value.status.details
    assert "SELECT secret" in caplog.text  # the operator sees it in the log


def test_translated_infrastructure_errors_become_503():
    interceptors = [RequestIdInterceptor(METHODS), ErrorInterceptor(lambda e: Unavailable("db down"))]

    def boom(r, c):
        raise ConnectionError("refused")

    _, call = run_through(interceptors, HEALTH, boom)
    with pytest.raises(Aborted) as err:
        call()
    assert dict(err.value.status.trailing_metadata)["x-http-status"] == "503"


def test_access_log_line_has_rpc_code_and_tenant(caplog):
    from server.logs import JsonFormatter

    _, call = run_through(
        chain(),
        GET,
        lambda r, c: "ok",
        metadata=[("authorization", "Bearer good"), ("x-request-id", "rid-7")],
    )
    with caplog.at_level(logging.INFO, logger="reconrouter.access"):
        call()
    record = next(r for r in caplog.records if r.name == "reconrouter.access")
    line = json.loads(JsonFormatter().format(record))
    assert (line["rpc"], line["code"], line["tenant"]) == (GET, "OK", "t1")


def test_a_call_the_client_cancelled_is_logged_as_cancelled(caplog):
    def cancelled_meanwhile(request, context):
        context.cancelled = True
        return "too late"

    _, call = run_through(chain(), HEALTH, cancelled_meanwhile)
    with caplog.at_level(logging.INFO, logger="reconrouter.access"), pytest.raises(ValueError):
        call()
    assert caplog.records[-1].code == "CANCELLED"
