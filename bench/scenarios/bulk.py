"""Scenario 5, /v1/bulk: 50 GETs in one POST /v1/bulk vs the same 50 GETs one by one.

One caller, one keep-alive connection, `plan.rounds` rounds per repeat; a "request" here is a round
(one bulk call, or 50 sequential calls), so p50 is the time to get all 50 answers. The gRPC side
does the same with BulkService/Batch vs 50 GetException calls on one channel, plus a Batch of one
GET: (p50 of 50 - p50 of 1) / 49 is what one more sub-request costs, set against a direct gRPC
GetException (p50 of the 50 sequential calls / 50). Both are issue 4's; `python -m bench bulk` runs
this scenario alone.

Until POST /v1/bulk (or gRPC Batch) answers, the scenario records a TODO instead of numbers.
"""

from __future__ import annotations

import json

import grpc
from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from bench.drivers import GrpcClient, RestClient
from bench.harness import Bench, Target
from bench.scenarios.reads import read_ids

SCENARIO = "5 bulk"
GETS = 50
BATCH_RPC = "/reconrouter.bulk.v1.BulkService/Batch"
GET_RPC = "/reconrouter.exceptions.v1.ExceptionsService/GetException"


def run(bench: Bench) -> None:
    main = bench.main()
    ids = (read_ids(bench) * GETS)[:GETS]
    rest(bench, main, ids)
    grpc_side(bench, main, ids)


def rest(bench: Bench, main: Target, ids: list[str]) -> None:
    headers = {"Authorization": f"Bearer {main.token}"}
    body = json.dumps({"requests": [{"url": f"/v1/exceptions/{i}", "method": "GET"} for i in ids]}).encode()
    with main.client() as client:
        probe = client.post("/v1/bulk", content=body, headers={"Content-Type": "application/json"})
    if probe.status_code == 404:  # the route is not served yet: no number, a TODO
        bench.todo(SCENARIO, "bulk_50_gets_rest", "POST /v1/bulk is not served yet")
        return
    if probe.status_code != 200 or not isinstance(_json(probe.content), list):
        raise RuntimeError(f"POST /v1/bulk answered {probe.status_code}: {probe.text[:300]}")

    def bulk_call(client: RestClient, _round: int) -> None:
        status, _, content = client.request("POST", "/v1/bulk", headers, body)
        answers = _json(content)
        if status != 200 or len(answers) != GETS or any(a["status"] != 200 for a in answers):
            raise RuntimeError(f"/v1/bulk answered {status}: {content[:300]!r}")

    def one_by_one(client: RestClient, _round: int) -> None:
        for i in ids:
            status, _, content = client.request("GET", f"/v1/exceptions/{i}", headers)
            if status != 200:
                raise RuntimeError(f"GET answered {status}: {content[:300]!r}")

    _pair(bench, main, "rest", bulk_call, one_by_one, "POST /v1/bulk")


def grpc_side(bench: Bench, main: Target, ids: list[str]) -> None:
    from reconrouter.bulk.v1 import bulk_pb2

    batch = bulk_pb2.BatchRequest(
        requests=[bulk_pb2.SubRequest(url=f"/v1/exceptions/{i}", method="GET") for i in ids]
    ).SerializeToString()
    client = GrpcClient(main.grpc_target)
    try:
        client.call(BATCH_RPC, batch, main.auth)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise
        bench.todo(SCENARIO, "bulk_50_gets_grpc", "BulkService/Batch is not served yet")
        return
    finally:
        client.close()
    gets = [pb.GetExceptionRequest(exception_id=i).SerializeToString() for i in ids]
    single = bulk_pb2.BatchRequest(requests=[bulk_pb2.SubRequest(url=f"/v1/exceptions/{ids[0]}")])

    def batch_of_one(client: GrpcClient, _round: int) -> None:
        answer = bulk_pb2.BatchResponse.FromString(
            client.call(BATCH_RPC, single.SerializeToString(), main.auth)
        )
        if [r.status for r in answer.responses] != [200]:
            raise RuntimeError(f"Batch of one answered {[r.status for r in answer.responses]}")

    def bulk_call(client: GrpcClient, _round: int) -> None:
        answer = bulk_pb2.BatchResponse.FromString(client.call(BATCH_RPC, batch, main.auth))
        if len(answer.responses) != GETS or any(r.status != 200 for r in answer.responses):
            raise RuntimeError(f"Batch answered {[r.status for r in answer.responses][:5]}")

    def one_by_one(client: GrpcClient, _round: int) -> None:
        for message in gets:
            client.call(GET_RPC, message, main.auth)

    _pair(bench, main, "grpc", bulk_call, one_by_one, "BulkService/Batch")
    one = bench.measure_calls(
        SCENARIO,
        "bulk_1_get_grpc",
        main,
        "grpc",
        prepare=lambda: list(range(bench.plan.rounds * 5)),
        call=batch_of_one,
        connections=1,
        note="one BulkService/Batch with a single GET per request",
    )
    fifty, direct = bench.find("bulk_50_gets_grpc"), bench.find("sequential_50_gets_grpc")
    if fifty and direct and one["p50_ms"] and direct["p50_ms"]:
        per_sub = (fifty["p50_ms"] - one["p50_ms"]) / (GETS - 1)
        bench.derived(
            "one more sub-request in a gRPC Batch / a direct gRPC GetException (p50)",
            per_sub / (direct["p50_ms"] / GETS),
            f"(bulk_50_gets_grpc.p50 - bulk_1_get_grpc.p50) / {GETS - 1} = {per_sub:.3f} ms",
            f"sequential_50_gets_grpc.p50 / {GETS} = {direct['p50_ms'] / GETS:.3f} ms",
            "a sub-request runs in process: it should cost well under a call over the network",
        )


def _pair(bench: Bench, main: Target, transport: str, bulk_call, one_by_one, what: str) -> None:
    rounds = lambda: list(range(bench.plan.rounds))  # noqa: E731
    bench.measure_calls(
        SCENARIO,
        f"bulk_50_gets_{transport}",
        main,
        transport,
        prepare=rounds,
        call=bulk_call,
        connections=1,
        items_per_request=GETS,
        note=f"one {what} with {GETS} GETs per request",
    )
    bench.measure_calls(
        SCENARIO,
        f"sequential_50_gets_{transport}",
        main,
        transport,
        prepare=rounds,
        call=one_by_one,
        connections=1,
        items_per_request=GETS,
        calls_per_request=GETS,
        note=f"{GETS} GETs one after the other on one connection per request",
    )
    bench.ratio(
        f"50 sequential GETs / one bulk of 50, {transport} (p50)",
        f"sequential_50_gets_{transport}",
        f"bulk_50_gets_{transport}",
        "p50_ms",
        "issue 7 target for POST /v1/bulk: >= 5" if transport == "rest" else "the same without Envoy",
    )


def _json(content: bytes):
    try:
        return json.loads(content)
    except ValueError:
        return None
