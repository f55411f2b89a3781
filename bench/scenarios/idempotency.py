"""Scenario 4, idempotency: what a key costs and what a replay saves (API.md §5).

1. 100-item MANUAL bulk dispatch over REST, one caller: first execution (fresh exceptions and a new
   `Idempotency-Key` per call) vs replay (the same key and body again: answered from the stored
   response, `X-Idempotency-Replayed: true`, nothing executed).
2. CreateException over REST under load: a new key per request (first execution) vs one key
   replayed vs no key at all.
3. The interceptor's cost on a call without a key: the same key-less CreateException against a
   second server on the same database that runs without the interceptor
   (bench/no_idempotency_server.py), over REST and gRPC; compared by server CPU per call and p50.
4. The interceptor's own CPU time for a key-less call, in process (no network to hide it).

Parts 1, 3 and 4 are what issue 3 asked for; `python -m bench idempotency` runs this scenario alone.
"""

from __future__ import annotations

import json
import timeit
import uuid
from collections import namedtuple
from typing import Any

from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from bench.drivers import GrpcLoad, RestClient, RestLoad
from bench.harness import Bench, Target
from bench.scenarios.dispatch import BATCH, REST_PATH, check_rest, fresh_batches, rest_body

SCENARIO = "4 idempotency"
CREATE = "/reconrouter.exceptions.v1.ExceptionsService/CreateException"
KEY_HEADER = "Idempotency-Key"


def run(bench: Bench) -> None:
    main = bench.main()
    dispatch_first_vs_replay(bench, main)
    create_first_vs_replay(bench, main)
    keyless_overhead(bench, main)
    bench.extras.append(interceptor_cpu(20_000 if bench.plan.name == "smoke" else 200_000))


def dispatch_first_vs_replay(bench: Bench, main: Target) -> None:
    headers = {"Authorization": f"Bearer {main.token}"}
    answered: list[tuple[bytes, str, bytes]] = []  # (body, key, first response) of the last first run

    def prepare_first() -> list[bytes]:
        answered.clear()
        return [rest_body(ids, "MANUAL") for ids in fresh_batches(main, bench.plan.rounds, "idem")]

    def first(client: RestClient, body: bytes) -> None:
        key = f"bench-{uuid.uuid4().hex}"
        status, got, content = client.request("POST", REST_PATH, {**headers, KEY_HEADER: key}, body)
        check_rest(status, content, BATCH)
        if got.get("x-idempotency-replayed") != "false":
            raise RuntimeError(f"first execution answered x-idempotency-replayed: {got}")
        answered.append((body, key, content))

    def replay(client: RestClient, item: tuple[bytes, str, bytes]) -> None:
        body, key, content = item
        status, got, again = client.request("POST", REST_PATH, {**headers, KEY_HEADER: key}, body)
        if status != 200 or got.get("x-idempotency-replayed") != "true" or again != content:
            raise RuntimeError(
                f"replay answered {status} {got.get('x-idempotency-replayed')}: {again[:200]!r}"
            )

    note = "one caller; {} of a 100-item MANUAL bulk dispatch with Idempotency-Key"
    bench.measure_calls(
        SCENARIO,
        "idem_dispatch_first_rest",
        main,
        "rest",
        prepare=prepare_first,
        call=first,
        connections=1,
        items_per_request=BATCH,
        note=note.format("first execution"),
    )
    bench.measure_calls(
        SCENARIO,
        "idem_dispatch_replay_rest",
        main,
        "rest",
        prepare=lambda: list(answered),
        call=replay,
        connections=1,
        items_per_request=BATCH,
        note=note.format("replay"),
    )
    bench.ratio(
        "replay / first execution, 100-item dispatch (p50)",
        "idem_dispatch_replay_rest",
        "idem_dispatch_first_rest",
        "p50_ms",
        "issue 7 target: <= 0.33",
    )


def create_first_vs_replay(bench: Bench, main: Target) -> None:
    auth = (("Authorization", f"Bearer {main.token}"), ("Content-Type", "application/json"))
    body = json.dumps({"transaction_id": "idem-create", "amount": "10.00", "currency": "EUR"}).encode()
    bench.measure(
        SCENARIO,
        "idem_create_first_rest",
        main,
        RestLoad(("/v1/exceptions",), "POST", auth, body, unique_header=KEY_HEADER),
        note="CreateException, a new Idempotency-Key per request",
    )
    replayed = (*auth, (KEY_HEADER, f"bench-replay-{uuid.uuid4().hex}"))
    bench.measure(
        SCENARIO,
        "idem_create_replay_rest",
        main,
        RestLoad(("/v1/exceptions",), "POST", replayed, body),
        note="CreateException, the same Idempotency-Key and body every time (all but the first replayed)",
    )
    bench.ratio(
        "replay / first execution, CreateException (server CPU per call)",
        "idem_create_replay_rest",
        "idem_create_first_rest",
        "server_cpu_s_per_req",
        "what a replay saves on a small write",
    )


def keyless_overhead(bench: Bench, main: Target) -> None:
    body = json.dumps({"transaction_id": "keyless"}).encode()
    message = pb.CreateExceptionRequest(transaction_id="keyless").SerializeToString()
    rest_headers = (("Authorization", f"Bearer {main.token}"), ("Content-Type", "application/json"))
    # The baseline server shares the main stack's database, so its token is valid there too.
    with bench.stack(
        "no-idempotency", server_module="bench.no_idempotency_server", database_url=main.database_url
    ) as bare:
        for transport in ("rest", "grpc"):
            for target, suffix in ((main, ""), (bare, "_no_idempotency")):
                load = (
                    RestLoad(("/v1/exceptions",), "POST", rest_headers, body)
                    if transport == "rest"
                    else GrpcLoad(CREATE, message, main.auth)
                )
                bench.measure(
                    SCENARIO,
                    f"create_keyless_{transport}{suffix}",
                    target,
                    load,
                    note="" if suffix == "" else "the same server without the idempotency interceptor",
                )
            for key in ("server_cpu_s_per_req", "p50_ms"):
                bench.ratio(
                    f"key-less CreateException {transport}, with / without the interceptor ({key})",
                    f"create_keyless_{transport}",
                    f"create_keyless_{transport}_no_idempotency",
                    key,
                    "the idempotency interceptor's cost on a call without a key",
                )


Metadatum = namedtuple("Metadatum", ("key", "value"))


class _Context:
    """What the interceptor reads from a servicer context: the metadata Envoy forwards."""

    def __init__(self) -> None:
        self._metadata = tuple(
            Metadatum(k, v)
            for k, v in (
                ("authorization", "Bearer x"),
                ("x-request-id", str(uuid.uuid4())),
                ("x-forwarded-proto", "http"),
                ("x-envoy-original-path", "/v1/exceptions"),
                ("content-type", "application/grpc"),
                ("user-agent", "python-httpx/0.28.1"),
            )
        )

    def invocation_metadata(self):
        return self._metadata


class _UnusedStore:
    """A key-less call must never reach the store; any use fails the benchmark."""

    def __getattr__(self, name):
        raise AssertionError(f"a key-less call used the store ({name})")


def interceptor_cpu(iterations: int) -> dict[str, Any]:
    from server.contract.methods import load_methods
    from server.domain.auth import Principal
    from server.rpc import call_state
    from server.rpc.interceptors.idempotency import IdempotencyInterceptor

    methods = load_methods()
    interceptor = IdempotencyInterceptor(methods, _UnusedStore())  # type: ignore[arg-type]
    request, context = pb.CreateExceptionRequest(transaction_id="t"), _Context()
    proceed = lambda r, c: r  # noqa: E731
    state = call_state.CallState("bench", CREATE, methods[CREATE])
    state.principal = Principal("t", "tok", frozenset())
    token = call_state.enter(state)
    try:
        direct = min(timeit.repeat(lambda: proceed(request, context), number=iterations, repeat=5))
        wrapped = min(
            timeit.repeat(
                lambda: interceptor.around(CREATE, request, context, proceed), number=iterations, repeat=5
            )
        )
    finally:
        call_state.leave(token)
    added = round((wrapped - direct) / iterations * 1e6, 3)
    return {
        "title": "Idempotency interceptor CPU on a key-less call (in process)",
        "data": {"iterations": iterations, "added_us_per_call": added},
        "lines": [f"{added} µs added per call (best of 5 x {iterations:,} calls, timeit)."],
    }
