"""The /v1/bulk envelope is validated whole, before anything runs: every problem is named at once."""

import pytest
from google.protobuf import json_format
from reconrouter.bulk.v1 import bulk_pb2

from server.bulk.envelope import plan_batch
from server.contract.methods import load_methods
from server.contract.routes import RouteTable
from server.domain.errors import InvalidArgument

TABLE = RouteTable(load_methods())


def batch(*requests, **fields) -> bulk_pb2.BatchRequest:
    """Built from JSON, like the transcoder builds it from a REST body."""
    return json_format.ParseDict({"requests": list(requests), **fields}, bulk_pb2.BatchRequest())


def violations(request, max_requests=100) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as error:
        plan_batch(request, TABLE, max_requests)
    return {v.field: v.description for v in error.value.violations}


def test_a_valid_batch_plans_every_request_in_order():
    planned = plan_batch(
        batch(
            {"url": "v1/exceptions?status=OPEN"},
            {"url": "/v1/exceptions", "method": "post", "data": '{"transaction_id": "t"}', "id": "c"},
            {"url": "/v1/exceptions/@{c.id}/dispatch", "method": "POST", "data": {"target_system": "MANUAL"}},
        ),
        TABLE,
        100,
    )
    assert [(p.method, p.path, p.query) for p in planned] == [
        ("GET", "/v1/exceptions", "status=OPEN"),
        ("POST", "/v1/exceptions", ""),
        ("POST", "/v1/exceptions/@{c.id}/dispatch", ""),
    ]
    assert [p.match.route.method.name for p in planned] == [
        "ListExceptions",
        "CreateException",
        "DispatchException",
    ]
    assert planned[1].body == {"transaction_id": "t"} and planned[1].has_body
    assert not planned[0].has_body
    assert [r.target for r in planned[2].references] == ["c"]


def test_request_count_limits():
    assert violations(batch()) == {"requests": "must contain at least 1 request"}
    three = batch(*[{"url": "/v1/exceptions"}] * 3)
    assert violations(three, max_requests=2) == {"requests": "must contain at most 2 requests"}
    assert len(plan_batch(three, TABLE, 3)) == 3


def test_every_bad_request_is_named_in_one_answer():
    found = violations(
        batch(
            {"url": "/v1/exceptions"},
            {"url": "/v1/nothing"},
            {"url": "/v1/exceptions", "method": "DELETE"},
            {"url": "/v1/exceptions", "method": "TRACE"},
            {"url": "/v1/bulk", "method": "POST", "data": {"requests": []}},
            {"url": "/v1/exceptions", "method": "POST", "data": "{not json"},
            {"url": ""},
            {"url": "https://elsewhere.example/v1/exceptions"},
        )
    )
    assert found == {
        "requests[1].url": "no route for GET /v1/nothing",
        "requests[2].url": "no route for DELETE /v1/exceptions (it allows GET, POST)",
        "requests[3].method": "must be one of GET, POST, PUT, PATCH, DELETE",
        "requests[4].url": "/v1/bulk cannot be nested in a /v1/bulk request",
        "requests[5].data": "is not valid JSON (Expecting property name enclosed in double quotes at "
        "position 1)",
        "requests[6].url": "is required",
        "requests[7].url": "must be a path of this API such as /v1/exceptions, not an absolute URL",
    }


def test_ids_and_references():
    found = violations(
        batch(
            {"url": "/v1/exceptions", "id": "a"},
            {"url": "/v1/exceptions", "id": "a"},
            {"url": "/v1/exceptions", "id": "no spaces"},
            {"url": "/v1/exceptions/@{ghost.id}"},
            {"url": "/v1/exceptions/@{a..id}"},
            {"url": "/v1/exceptions", "method": "POST", "data": {"transaction_id": "@{ghost}"}},
        )
    )
    assert found == {
        "requests[1].id": "repeats the id of requests[0]",
        "requests[2].id": "must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'",
        "requests[3]": "@{ghost.id} refers to no request of this batch (no request has that id)",
        "requests[4].url": "@{a..id} is not a reference of the form @{id.path.to.field}",
        "requests[5]": "@{ghost} refers to no request of this batch (no request has that id)",
    }


def test_a_reference_to_a_later_request_is_not_an_envelope_error():
    # It answers 424 when its turn comes (runner tests); the envelope only checks that the id exists.
    planned = plan_batch(
        batch({"url": "/v1/exceptions/@{later.id}"}, {"url": "/v1/exceptions", "id": "later"}), TABLE, 9
    )
    assert len(planned) == 2


def test_headers_as_object_or_array_become_metadata_without_the_callers_identity():
    planned = plan_batch(
        batch(
            {
                "url": "/v1/exceptions",
                "headers": {"Idempotency-Key": "k1", "Authorization": "Bearer other", "X-Request-Id": "mine"},
            },
            {
                "url": "/v1/exceptions",
                "headers": [{"name": "X-Idempotency-Key", "value": "k2"}, {"name": "X-N", "value": 5}],
            },
        ),
        TABLE,
        9,
    )
    assert planned[0].headers == (("idempotency-key", "k1"),)
    assert planned[1].headers == (("x-idempotency-key", "k2"), ("x-n", "5"))


@pytest.mark.parametrize(
    "headers",
    [
        "a string",
        [{"name": "x"}],
        {"x": {"nested": 1}},
        {"Bad Header": "v"},
        {"x-thing-bin": "v"},
        {"grpc-timeout": "1S"},
        {"x": "caf\u00e9"},
    ],
)
def test_headers_that_cannot_be_sent_are_refused(headers):
    assert list(violations(batch({"url": "/v1/exceptions", "headers": headers}))) == ["requests[0].headers"]


def test_data_as_json_text_or_object_and_numbers_stay_integers():
    planned = plan_batch(
        batch(
            {"url": "/v1/exceptions?x=1", "method": "POST", "data": '{"limit": 5}'},
            {"url": "/v1/exceptions", "method": "POST", "data": {"limit": 5}},
            {"url": "/v1/exceptions", "method": "POST", "data": "null"},
        ),
        TABLE,
        9,
    )
    assert planned[0].body == planned[1].body == {"limit": 5}
    assert isinstance(planned[1].body["limit"], int)
    assert not planned[2].has_body


def test_a_number_past_pythons_digit_limit_in_data_is_a_400_naming_the_field_not_a_500():
    # json.loads raises a ValueError without .msg for integers of more than 4300 digits.
    found = violations(batch({"url": "/v1/exceptions", "method": "POST", "data": "1" * 5000}))
    assert set(found) == {"requests[0].data"}
    assert "4300 digits" in found["requests[0].data"]
