"""Scenario 1, ceilings: a call that does no work, over gRPC and over REST through Envoy.

`reconrouter.health.v1.HealthService/Live` (REST `GET /livez`) needs no token and touches nothing
but the interceptor chain, so it is what the framework alone allows on this stack; every other
scenario is read against it (ratios)."""

from __future__ import annotations

from reconrouter.health.v1 import health_pb2

from bench.drivers import GrpcLoad, RestLoad
from bench.harness import Bench

SCENARIO = "1 ceilings"
LIVE = "/reconrouter.health.v1.HealthService/Live"


def run(bench: Bench) -> None:
    main = bench.main()
    bench.measure(SCENARIO, "live_grpc", main, GrpcLoad(LIVE, health_pb2.LiveRequest().SerializeToString()))
    bench.measure(SCENARIO, "live_rest", main, RestLoad(("/livez",)))
    bench.ratio(
        "ceiling REST / ceiling gRPC (req/s)",
        "live_rest",
        "live_grpc",
        "rps",
        "what Envoy + JSON transcoding leave of the bare gRPC ceiling",
    )
