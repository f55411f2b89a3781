"""`schemathesis run` (the CLI, as a user runs it) over the OpenAPI document the stack serves, through
Envoy: positive and negative generation, schemathesis' default checks (response schemas, status codes,
content types, headers, schema-valid data accepted, schema-invalid data refused, missing required
headers, undeclared methods answering 405 with `Allow`, ...) and its "schema validation mismatch"
warning made a failure (tests/hardening/schemathesis.toml, warnings.fail-on). The allowances for
state the document cannot describe are in that file and tests/hardening/schemathesis_hooks.py, each
with its reason (docs/decisions.md).

FUZZ_EXAMPLES (default 15) examples per operation and phase; `make fuzz` runs 500.

Two runs with two tenants, so a fuzzer never makes the server call out: the routes that need
targets:admin with a tenant that has no dispatch scope, the others with a tenant that dispatches but
has no targets:admin (only MANUAL)."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from schemathesis.config import SchemathesisWarning

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "hardening" / "schemathesis.toml"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
ADMIN_OPERATIONS = (
    r"^(TargetsService_|RoutingRulesService_(Create|Update|Delete)RoutingRule$"
    r"|SlaPolicyService_PutSlaPolicy$)"
)
SCHEMATHESIS = [sys.executable, "-m", "schemathesis.cli"]


@pytest.fixture(scope="module")
def tenants(hard_stack):
    suffix = uuid.uuid4().hex[:8]
    admin = hard_stack.create_token(
        f"st-admin-{suffix}", ["targets:admin", "exceptions:read", "exceptions:write"]
    )
    worker = hard_stack.create_token(
        f"st-{suffix}", ["exceptions:read", "exceptions:write", "exceptions:dispatch"]
    )
    # Rows to find, so that lists and reads have something behind them.
    for i in range(3):
        created = requests.post(
            f"{hard_stack.base_url}/v1/exceptions",
            json={"transaction_id": f"st-{i}", "amount": "10.00", "currency": "USD"},
            headers={"Authorization": f"Bearer {worker}"},
            timeout=30,
        )
        assert created.status_code == 200, created.text
    return {"admin": admin, "worker": worker}


def _run(
    stack, token: str, work: Path, *args: str, location: str | None = None
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "RECONROUTER_FUZZ_TOKEN": token,
        "SCHEMATHESIS_HOOKS": "tests.hardening.schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "NO_COLOR": "1",
    }
    command = [
        *SCHEMATHESIS,
        "--config-file",
        str(CONFIG),
        "run",
        location or f"{stack.base_url}/openapi.json",
        "--url",
        stack.base_url,
        "--max-examples",
        str(EXAMPLES),
        "--request-timeout",
        "60",
        "--workers",
        "1",
        *args,
    ]
    # cwd: schemathesis keeps its cache in ./.schemathesis.
    return subprocess.run(
        command, env=env, cwd=work, capture_output=True, text=True, timeout=3600, check=False
    )


def _verdict(run: subprocess.CompletedProcess) -> str:
    return f"exit {run.returncode}\n{run.stdout[-20000:]}\n{run.stderr[-5000:]}"


# The operations whose schema-valid requests meet state here (schemathesis.toml's allowances): run
# apart, with every warning but "schema validation mismatch", which all-refused state would trigger.
STATE_BOUND = {
    "admin": r"^TargetsService_(PutTarget|DeleteTarget|PauseTarget|ResumeTarget|RotateTargetSecret)$",
    "worker": r"^(ExceptionsService_(DispatchException|BulkDispatchExceptions|ReceiveCallback)"
    r"|DeliveriesService_(RetryDelivery|CancelDelivery))$",
}
ALL_WARNINGS_BUT_MISMATCH = ",".join(w.value for w in SchemathesisWarning if w.value != "validation_mismatch")
RUNS = {
    "admin": (
        "--include-operation-id-regex",
        ADMIN_OPERATIONS,
        "--exclude-operation-id-regex",
        STATE_BOUND["admin"],
    ),
    "admin-state": (
        "--include-operation-id-regex",
        STATE_BOUND["admin"],
        "--warnings",
        ALL_WARNINGS_BUT_MISMATCH,
    ),
    "worker": ("--exclude-operation-id-regex", f"{ADMIN_OPERATIONS}|{STATE_BOUND['worker']}"),
    "worker-state": (
        "--include-operation-id-regex",
        STATE_BOUND["worker"],
        "--warnings",
        ALL_WARNINGS_BUT_MISMATCH,
    ),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_schemathesis_reports_no_failure_and_no_validation_mismatch(hard_stack, tenants, tmp_path, name):
    served = requests.get(f"{hard_stack.base_url}/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == json.loads((ROOT / "gen" / "openapi.json").read_text())
    run = _run(hard_stack, tenants[name.split("-")[0]], tmp_path, *RUNS[name])
    assert run.returncode == 0, _verdict(run)
    assert "Schema validation mismatch" not in run.stdout, _verdict(run)
    assert "Failures:" not in run.stdout and " passed" in run.stdout, _verdict(run)


def test_every_operation_is_in_one_run():
    """The four runs together cover the whole document, each operation once."""
    document = json.loads((ROOT / "gen" / "openapi.json").read_text())
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    admin, state_admin, state_worker = (re.compile(p) for p in (ADMIN_OPERATIONS, *STATE_BOUND.values()))
    for operation_id in ids:
        runs = [
            bool(admin.search(operation_id)) and not state_admin.search(operation_id),
            bool(state_admin.search(operation_id)),
            not admin.search(operation_id) and not state_worker.search(operation_id),
            bool(state_worker.search(operation_id)),
        ]
        assert runs.count(True) == 1, operation_id


def test_the_run_fails_when_the_document_allows_what_the_server_refuses(hard_stack, tenants, tmp_path):
    """The same run over a document that forgets one rule (the page size's maximum) fails: schema-valid
    requests are refused with 400, which is what positive_data_acceptance reports."""
    document = requests.get(f"{hard_stack.base_url}/openapi.json", timeout=30).json()
    loose = copy.deepcopy(document)
    for parameter in loose["paths"]["/v1/exceptions"]["get"]["parameters"]:
        if parameter.get("name") == "limit":
            parameter["schema"].pop("maximum")
            parameter["schema"]["minimum"] = 10_000  # only values the server refuses
    path = tmp_path / "loose.json"
    path.write_text(json.dumps(loose))
    run = _run(
        hard_stack,
        tenants["worker"],
        tmp_path,
        "--include-operation-id",
        "ExceptionsService_ListExceptions",
        location=str(path),
    )
    assert run.returncode != 0, _verdict(run)
    assert "Schema-valid request rejected" in run.stdout, _verdict(run)
