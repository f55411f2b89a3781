"""REST -> request message and message -> JSON for /v1/bulk sub-requests: the transcoder's rules as
observed on Envoy 1.40 (the e2e parity tests hold the two side by side)."""

import json

import pytest
from google.api import httpbody_pb2
from google.protobuf import any_pb2, struct_pb2
from google.rpc import error_details_pb2, status_pb2
from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from server.bulk.transcode import (
    INVALID_VALUE,
    TranscodeError,
    build_request,
    field_violation,
    local_reply_json,
    message_json,
    parse_query,
    status_json,
)
from server.contract.json_rules import BodyRule, body_rules
from server.contract.methods import load_methods
from server.contract.routes import RouteTable
from tests.support.lenient_bodies import ACCEPTED, REFUSED

TABLE = RouteTable(load_methods())
STATUS_TYPE = "type.googleapis.com/reconrouter.exceptions.v1.ExceptionStatus"


def request(verb, path, query="", body=None):
    return build_request(TABLE.resolve(verb, path), query, body, has_body=body is not None)


def test_query_parameters_in_both_spellings_with_enums_by_name_or_number():
    message = request("GET", "/v1/exceptions", "status=OPEN&severity=4&sortBy=id&sort_order=asc&limit=5")
    assert (message.status, message.severity) == (pb.OPEN, pb.CRITICAL)
    assert (message.sort_by, message.sort_order, message.limit) == ("id", "asc", 5)


def test_the_last_value_wins_for_a_single_field_and_repeated_fields_collect_all():
    assert request("GET", "/v1/exceptions", "limit=1&limit=2").limit == 2
    message = request("POST", "/v1/exceptions/bulk/assign", "exception_ids=a&exceptionIds=b")
    assert list(message.exception_ids) == ["a", "b"]


def test_query_decoding_keeps_plus_and_ignores_parameters_without_a_value():
    assert request("GET", "/v1/exceptions", "date_from=2024-01-01T00:00:00+00:00").date_from.endswith(
        "+00:00"
    )
    assert request("GET", "/v1/exceptions", "assigned_to=a%20b%2Fc").assigned_to == "a b/c"
    assert request("GET", "/v1/exceptions", "limit&&sort_by=id").limit == 0
    assert list(parse_query("a=1&b&=2&c=%zz")) == [("a", "1"), ("c", "%zz")]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "bogus=1",
            'Could not find field "bogus" in the type "reconrouter.exceptions.v1.ListExceptionsRequest".',
        ),
        ("limit=abc", 'limit: invalid value "abc" for type TYPE_INT32'),
        ("limit=1.5", 'limit: invalid value "1.5" for type TYPE_INT32'),
        ("limit=99999999999", 'limit: invalid value "99999999999" for type TYPE_INT32'),
        ("status=open", f'status: invalid value "open" for type {STATUS_TYPE}'),
        ("status=", f'status: invalid value "" for type {STATUS_TYPE}'),
        # Past Python's int digit limit (4300): the same 400, not a 500.
        ("limit=" + "9" * 5000, f'limit: invalid value "{"9" * 5000}" for type TYPE_INT32'),
    ],
)
def test_bad_query_parameters_get_envoys_messages(query, message):
    with pytest.raises(TranscodeError) as error:
        request("GET", "/v1/exceptions", query)
    assert str(error.value) == message


def test_path_then_query_then_body_for_one_field():
    path = "/v1/exceptions/from-path/dispatch"
    assert request("POST", path, "", {}).exception_id == "from-path"
    assert request("POST", path, "exception_id=from-query", {}).exception_id == "from-query"
    body = {"exception_id": "from-body", "target_system": "MANUAL"}
    message = request("POST", path, "exception_id=from-query", body)
    assert (message.exception_id, message.target_system) == ("from-body", "MANUAL")


def test_bodies_in_both_spellings_unknown_fields_dropped_and_get_bodies_read():
    message = request("POST", "/v1/exceptions", "", {"transactionId": "t", "severity": "HIGH", "bogus": 1})
    assert (message.transaction_id, message.severity) == ("t", pb.HIGH)
    assert request("GET", "/v1/exceptions", "limit=3", {"limit": 1}).limit == 1


@pytest.mark.parametrize("body", [[1], "text", 5])
def test_a_body_that_is_not_an_object_is_refused(body):
    with pytest.raises(TranscodeError, match="Root element must be a message"):
        request("POST", "/v1/exceptions", "", body)


def test_a_body_of_the_wrong_type_is_refused():
    with pytest.raises(TranscodeError, match="transaction_id"):
        request("POST", "/v1/exceptions", "", {"transaction_id": 5})


def test_message_json_prints_like_the_transcoder():
    message = pb.ReconciliationException(id="x", severity=pb.HIGH, amount="1.00", metadata={"k": "v"})
    printed = message_json(message)
    # Field order, proto names, enums by name, defaults printed, unset optional fields left out.
    assert list(printed) == [
        "id",
        "transaction_id",
        "severity",
        "status",
        "reason",
        "amount",
        "source",
        "metadata",
    ]
    assert printed["severity"] == "HIGH" and printed["status"] == "EXCEPTION_STATUS_UNSPECIFIED"
    changes = struct_pb2.Struct()
    changes.update({"count": 2, "ratio": 0.5})
    history = message_json(pb.HistoryEntry(changes=changes))
    assert history["changes"] == {"count": 2, "ratio": 0.5}
    assert isinstance(history["changes"]["count"], int)  # `2`, as Envoy prints it, not `2.0`


def test_http_bodies_print_their_json_or_their_text():
    assert message_json(httpbody_pb2.HttpBody(content_type="application/json", data=b"[1]")) == [1]
    assert message_json(httpbody_pb2.HttpBody(content_type="text/plain", data=b"hi")) == "hi"


def test_status_json_is_convert_grpc_status():
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="NOT_FOUND", domain="reconrouter"))
    printed = status_json(status_pb2.Status(code=5, message="exception not found", details=[info]))
    assert printed == {
        "code": 5,
        "message": "exception not found",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "NOT_FOUND",
                "domain": "reconrouter",
                "metadata": {},
            }
        ],
    }
    assert status_json(status_pb2.Status(code=12, message="x")) == {"code": 12, "message": "x", "details": []}
    assert list(local_reply_json(3, "INVALID_ARGUMENT", "m")) == ["code", "details", "message"]


@pytest.mark.parametrize(("verb", "path", "body", "field", "message"), REFUSED, ids=[r[3] for r in REFUSED])
def test_json_the_transcoder_would_read_as_nothing_is_refused_naming_the_field(
    verb, path, body, field, message
):
    """The same refusals, word for word, as Envoy's Lua filter (tests/e2e/test_envoy_errors.py)."""
    with pytest.raises(TranscodeError) as refused:
        request(verb, path, "", json.loads(body))
    assert str(refused.value) == f"{field}: {message}"
    assert field_violation(str(refused.value)) == (field, INVALID_VALUE)


@pytest.mark.parametrize(("verb", "path", "body"), ACCEPTED)
def test_json_that_only_looks_like_it_is_read_as_usual(verb, path, body):
    request(verb, path, "", json.loads(body))


def test_the_rules_cover_the_contracts_lists_maps_and_timestamps_and_nothing_free_form():
    rules = body_rules(route.method.request_type.DESCRIPTOR for route in TABLE.routes)
    create = rules["reconrouter.exceptions.v1.CreateExceptionRequest"]
    assert (
        create["occurredAt"]
        == create["occurred_at"]
        == BodyRule("occurred_at", "scalar", "", "google.protobuf.Timestamp")
    )
    assert create["metadata"].kind == "map" and "transaction_id" not in create
    batch = rules["reconrouter.exceptions.v1.BatchCreateExceptionsRequest"]["exceptions"]
    assert (batch.kind, batch.item_kind) == ("list", "message")
    assert batch.type_name == "reconrouter.exceptions.v1.CreateExceptionRequest"
    # A sub-request's data and headers are google.protobuf.Value: any JSON, not looked into.
    assert "reconrouter.bulk.v1.SubRequest" not in rules
    assert rules["reconrouter.bulk.v1.BatchRequest"]["requests"] == BodyRule("requests", "list", "", "")
