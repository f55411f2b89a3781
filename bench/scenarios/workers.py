"""Scenario 7, more processes: WORKERS=1 vs 2 (SO_REUSEPORT on one port), and 1 vs 2 replicas
behind one Envoy (PostgreSQL only: replicas share the database, which SQLite files cannot do well).

Each configuration gets a stack of its own on a fresh database with the same few exceptions, and the
same loads: the gRPC ceiling and GetException straight to the server (gRPC), GetException through
Envoy (REST). SO_REUSEPORT spreads *connections* over the workers: h2load opens `connections` of
them, but Envoy talks to the server over one HTTP/2 connection per upstream, so over REST one
worker may get all the calls (that is a finding, not a fault of the bench).
"""

from __future__ import annotations

from reconrouter.exceptions.v1 import exceptions_pb2 as pb
from reconrouter.health.v1 import health_pb2

from bench.drivers import GrpcLoad, RestLoad
from bench.harness import Bench, Target, create_exceptions
from bench.scenarios.ceilings import LIVE
from bench.scenarios.reads import SERVICE

SCENARIO = "7 workers"


def loads(bench: Bench, target: Target, prefix: str) -> None:
    one = create_exceptions(target, 100, prefix)[50]
    if target.grpc_target:
        bench.measure(
            SCENARIO,
            f"{prefix}_live_grpc",
            target,
            GrpcLoad(LIVE, health_pb2.LiveRequest().SerializeToString()),
        )
        get = pb.GetExceptionRequest(exception_id=one).SerializeToString()
        bench.measure(
            SCENARIO,
            f"{prefix}_get_exception_grpc",
            target,
            GrpcLoad(f"{SERVICE}/GetException", get, target.auth),
        )
    bench.measure(
        SCENARIO,
        f"{prefix}_get_exception_rest",
        target,
        RestLoad((f"/v1/exceptions/{one}",), headers=(("Authorization", f"Bearer {target.token}"),)),
    )


def run(bench: Bench) -> None:
    for workers in (1, 2):
        with bench.stack(f"workers-{workers}", env={"WORKERS": str(workers)}) as target:
            loads(bench, target, f"workers{workers}")
    for kind in ("live_grpc", "get_exception_grpc", "get_exception_rest"):
        bench.ratio(
            f"WORKERS=2 / WORKERS=1, {kind} (req/s)",
            f"workers2_{kind}",
            f"workers1_{kind}",
            "rps",
            "what a second process buys on this 2-core machine (load generator and Envoy share it)",
        )
    if bench.database != "postgresql":
        bench.skip(SCENARIO, "replicas 1 vs 2", "needs PostgreSQL (BENCH_DATABASE_URL)")
        return
    for replicas in (1, 2):
        with bench.stack(f"replicas-{replicas}", replicas=replicas) as target:
            loads(bench, target, f"replicas{replicas}")
    bench.ratio(
        "2 replicas / 1 replica, GetException REST (req/s)",
        "replicas2_get_exception_rest",
        "replicas1_get_exception_rest",
        "rps",
        "Envoy spreading calls over two server processes on one database",
    )
