"""Schemathesis against the live REST surface through Envoy, driven by the OpenAPI document the stack
serves (GET /openapi.json, i.e. gen/openapi.json): for every operation, requests that fit the schema
(positive) and requests that do not (negative), with valid tokens. Checks on every response: no 5xx,
the body matches the operation's response schema (errors: google.rpc.Status), the content type and
headers are the declared ones, and no stack trace or internal detail in the body.

FUZZ_EXAMPLES (default 60) is the number of examples per operation; `make fuzz` runs 500.

Two tenants, so that fuzzing cannot make the server call out: the one that may configure targets
(any URL a fuzzer invents) has no dispatch scope, the one that dispatches (and runs /v1/bulk) has no
targets:admin, so it only ever has MANUAL."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.services.tokens import TokenService
from server.storage.engine import make_engine
from server.storage.uow import SqlUnitOfWorkFactory

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
DOCUMENT = json.loads((Path(__file__).resolve().parents[2] / "gen" / "openapi.json").read_text())
OPERATIONS = [(path, verb) for path, item in DOCUMENT["paths"].items() for verb in item]
LEAKS = ("Traceback", 'File "', "sqlalchemy", "psycopg", "sqlite3", "/work/", "site-packages")
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
    status_code_conformance,
]
SENT: dict[str, int] = {}


@pytest.fixture(scope="module")
def fuzz(hard_stack):
    engine = make_engine(hard_stack.database_url, pool_size=1)
    tokens = TokenService(SqlUnitOfWorkFactory(engine))
    suffix = uuid.uuid4().hex[:8]
    admin = tokens.create(f"fuzz-targets-{suffix}", ["targets:admin", "exceptions:read", "exceptions:write"])[
        1
    ]
    worker = tokens.create(f"fuzz-{suffix}", ["exceptions:read", "exceptions:write", "exceptions:dispatch"])[
        1
    ]
    engine.dispose()
    served = requests.get(f"{hard_stack.base_url}/openapi.json", timeout=30)
    assert served.status_code == 200 and served.json() == DOCUMENT
    schema = schemathesis.openapi.from_dict(served.json())
    session = requests.Session()
    # Seed something to find, so that lists, reads and bulk operations have rows behind them.
    for i in range(5):
        session.post(
            f"{hard_stack.base_url}/v1/exceptions",
            json={"transaction_id": f"fuzz-{i}", "amount": "10.00", "currency": "USD"},
            headers={"Authorization": f"Bearer {worker}"},
            timeout=30,
        )
    yield hard_stack, schema, session, {"targets:admin": admin, "": worker}
    session.close()
    print(f"\nfuzz: {sum(SENT.values())} requests over {len(SENT)} operations ({EXAMPLES} examples each)")


@pytest.mark.parametrize(("path", "verb"), OPERATIONS, ids=[f"{v.upper()} {p}" for p, v in OPERATIONS])
def test_fuzz_operation(fuzz, path, verb):
    stack, schema, session, tokens = fuzz
    operation = schema[path][verb.upper()]
    scope = DOCUMENT["paths"][path][verb].get("x-required-scope", "")
    token = tokens.get(scope, tokens[""])
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)
    label = f"{verb.upper()} {path}"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        response = case.call(base_url=stack.base_url, session=session, timeout=60)
        SENT[label] = SENT.get(label, 0) + 1
        case.validate_response(response, checks=CHECKS)
        # A word the caller sent may come back in an error that quotes the value (e.g. "unsupported
        # target system 'sqlalchemy'"): that is an echo, not a leak.
        sent = repr((case.path_parameters, case.query, case.body))
        leaked = [word for word in LEAKS if word in response.text and word not in sent]
        assert not leaked, (response.status_code, leaked, response.text[:500])

    run()
    assert SENT.get(label, 0) > 0
