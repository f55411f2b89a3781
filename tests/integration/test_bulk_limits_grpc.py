"""BULK_MAX_REQUESTS and BULK_TIME_BUDGET_SECONDS over gRPC, on a server configured with a cap of 3 and
a budget shorter than any call: the first sub-request always runs (the budget starts with it), every
later one answers 504 unrun."""

import json

import grpc
import pytest
from google.protobuf import json_format
from reconrouter.bulk.v1 import bulk_pb2, bulk_pb2_grpc
from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from server.bootstrap import build_app
from server.config import Settings
from server.storage.migrate import upgrade
from tests.support.databases import database_urls


@pytest.fixture(scope="module", params=database_urls())
def app(request, tmp_path_factory):
    with request.param(tmp_path_factory.mktemp("db")) as url:
        upgrade(url)
        application = build_app(
            Settings(database_url=url, bulk_max_requests=3, bulk_time_budget_seconds=1e-9)
        )
        yield application
        application.close()


@pytest.fixture(scope="module")
def bulk(grpc_channel):
    return bulk_pb2_grpc.BulkServiceStub(grpc_channel)


def batch(count: int) -> bulk_pb2.BatchRequest:
    create = {"url": "/v1/exceptions", "method": "POST", "data": json.dumps({"transaction_id": "budget"})}
    return json_format.ParseDict({"requests": [create] * count}, bulk_pb2.BatchRequest())


def test_more_requests_than_the_cap_are_refused_whole(bulk, stub, auth):
    with pytest.raises(grpc.RpcError) as raised:
        bulk.Batch(batch(4), metadata=auth("writer"))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "requests: must contain at most 3 requests" in raised.value.details()
    assert list(stub.ListExceptions(pb.ListExceptionsRequest(), metadata=auth("writer")).items) == []


def test_items_not_started_within_the_budget_answer_504(bulk, stub, auth):
    reply = bulk.Batch(batch(3), metadata=auth("writer"))
    assert [r.status for r in reply.responses] == [200, 504, 504]
    timed_out = reply.responses[1]
    assert timed_out.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert json_format.MessageToDict(timed_out.contents)["details"][0]["reason"] == "TIME_BUDGET_EXCEEDED"
    assert len(stub.ListExceptions(pb.ListExceptionsRequest(), metadata=auth("writer")).items) == 1
