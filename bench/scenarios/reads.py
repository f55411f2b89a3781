"""Scenario 2, reads: GetException and ListExceptions over gRPC and REST on the main stack.

The get asks for one exception among `plan.read_rows` (the same row every time: this is the cost of
the call path, not of the index; scenario 6 spreads gets over many rows); the list asks for the
first page of 20, newest first (the default sort)."""

from __future__ import annotations

from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from bench.drivers import GrpcLoad, RestLoad
from bench.harness import Bench, create_exceptions

SCENARIO = "2 reads"
SERVICE = "/reconrouter.exceptions.v1.ExceptionsService"


def read_ids(bench: Bench) -> list[str]:
    """The exceptions the read scenarios share on the main stack (created once)."""
    if "read_ids" not in bench.shared:
        bench.shared["read_ids"] = create_exceptions(bench.main(), bench.plan.read_rows, "read")
    return bench.shared["read_ids"]


def run(bench: Bench) -> None:
    main = bench.main()
    one = read_ids(bench)[len(read_ids(bench)) // 2]
    rest_auth = (("Authorization", f"Bearer {main.token}"),)
    get = pb.GetExceptionRequest(exception_id=one).SerializeToString()
    listing = pb.ListExceptionsRequest(limit=20).SerializeToString()
    bench.measure(SCENARIO, "get_exception_grpc", main, GrpcLoad(f"{SERVICE}/GetException", get, main.auth))
    bench.measure(
        SCENARIO, "get_exception_rest", main, RestLoad((f"/v1/exceptions/{one}",), headers=rest_auth)
    )
    bench.measure(
        SCENARIO, "list_exceptions_grpc", main, GrpcLoad(f"{SERVICE}/ListExceptions", listing, main.auth)
    )
    bench.measure(
        SCENARIO, "list_exceptions_rest", main, RestLoad(("/v1/exceptions?limit=20",), headers=rest_auth)
    )
    bench.ratio(
        "GetException REST / ceiling REST (req/s)",
        "get_exception_rest",
        "live_rest",
        "rps",
        "issue 7 target: >= 0.60",
    )
    bench.ratio(
        "GetException gRPC / ceiling gRPC (req/s)",
        "get_exception_grpc",
        "live_grpc",
        "rps",
        "the cost of auth + one indexed read + conversion, without Envoy",
    )
    bench.ratio(
        "ListExceptions REST / ceiling REST (req/s)",
        "list_exceptions_rest",
        "live_rest",
        "rps",
        "a page of 20: conversion and JSON printing of 20 items",
    )
    bench.ratio(
        "GetException REST / GetException gRPC (req/s)",
        "get_exception_rest",
        "get_exception_grpc",
        "rps",
        "what the REST layer costs a real read",
    )
