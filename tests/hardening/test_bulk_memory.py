"""The memory a `/v1/bulk` may cost the server is bounded by BULK_MAX_RESPONSE_BYTES (docs/bulk.md
"Memory budget"): the answer is budgeted while it is built, and an item that would take it over the
budget is left out with RESPONSE_TOO_LARGE while the rest still run.

Before, every sub-request's decoded answer was kept until the whole array was encoded: 30 pages of
200 large exceptions grew the server by 1.6 GB and then came back as a bare 429 (gRPC's send limit).
The peak RSS is read from /proc (VmHWM, reset through clear_refs just before the call): a resource
assertion, not a timing one.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.hardening.test_budgets import process_tree
from tests.support.databases import sqlite_database
from tests.support.stack import Stack

BUDGET = 4 * 1024 * 1024
MAX_REQUESTS = 100  # BULK_MAX_REQUESTS' default: the largest batch
MAX_PAGE = 200  # ListExceptions' largest limit
# The largest exception the service stores: 50 metadata entries of 1000 characters, a 1000-character
# reason (server/domain/exceptions.py LIMITS). 210 of them: every page of 200 is full.
METADATA = {f"key-{i:02d}-" + "k" * 55: "v" * 1000 for i in range(50)}


def memory(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} for {pid}")


@pytest.fixture(scope="module")
def bulk_stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("bulk-memory")
    env = {"BULK_MAX_RESPONSE_BYTES": str(BUDGET), "BULK_TIME_BUDGET_SECONDS": "50"}
    with sqlite_database(work) as url, Stack(url, env, work_dir=work, route_timeout_seconds=120) as stack:
        token = stack.create_token("bulk-memory", ["exceptions:read", "exceptions:write"])
        with httpx.Client(
            base_url=stack.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=180
        ) as client:
            for batch in range(3):
                items = [
                    {"transaction_id": f"t{batch}-{i}", "reason": "r" * 1000, "metadata": METADATA}
                    for i in range(70)
                ]
                created = client.post("/v1/exceptions/bulk/create", json={"exceptions": items})
                assert created.status_code == 200, created.text[:500]
            yield stack, client


def peak_growth(stack: Stack, call) -> tuple[httpx.Response, int]:
    """The call's answer, and the most any server process grew above its size just before it."""
    pids = process_tree(stack.server_process.pid)
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = {pid: memory(pid, "VmRSS") for pid in pids}
    response = call()
    return response, max(memory(pid, "VmHWM") - before[pid] for pid in pids)


def test_the_largest_bulk_of_pages_stays_within_its_memory_budget(bulk_stack):
    stack, client = bulk_stack
    page = client.get("/v1/exceptions", params={"limit": MAX_PAGE})
    page_bytes = len(page.content)
    assert page_bytes > BUDGET  # one full page alone is over the budget

    # Bound: the encoded answer, the copies gRPC and the HttpBody make (4 x budget), plus one
    # sub-request in flight at a time: its message, its decoded form and its encoding (6 x page).
    bound = 4 * BUDGET + 6 * page_bytes
    batch = {"requests": [{"url": f"/v1/exceptions?limit={MAX_PAGE}"}] * MAX_REQUESTS}
    response, growth = peak_growth(stack, lambda: client.post("/v1/bulk", json=batch))
    assert response.status_code == 200, response.text[:500]
    assert len(response.content) <= BUDGET
    items = response.json()
    assert len(items) == MAX_REQUESTS
    ran = [item for item in items if item["status"] != 504]  # the time budget may stop the last ones
    assert ran and all(item["status"] == 413 for item in ran), {item["status"] for item in items}
    info = ran[0]["contents"]["details"][0]
    assert info["reason"] == "RESPONSE_TOO_LARGE" and info["metadata"]["status"] == "200", info
    assert info["metadata"]["budget"] == str(BUDGET)
    assert growth <= bound, f"the server grew by {growth / 2**20:.0f} MiB (bound {bound / 2**20:.0f} MiB)"


def test_items_fill_the_budget_and_the_rest_still_run(bulk_stack):
    stack, client = bulk_stack
    small = client.get("/v1/exceptions", params={"limit": 20})
    bound = 4 * BUDGET + 6 * len(client.get("/v1/exceptions", params={"limit": MAX_PAGE}).content)
    requests = [{"url": "/v1/exceptions?limit=20"}] * 10 + [{"url": "/healthz"}]
    response, growth = peak_growth(stack, lambda: client.post("/v1/bulk", json={"requests": requests}))
    assert response.status_code == 200, response.text[:500]
    items = response.json()
    statuses = [item["status"] for item in items]
    fits = BUDGET // len(small.content)
    # The first pages fit, the next ones are left out, and a small item after them still runs.
    assert statuses[:fits] == [200] * fits and 413 in statuses[fits:10], statuses
    assert statuses[10] == 200 and items[10]["contents"]["status"] == "SERVING", items[10]
    assert len(response.content) <= BUDGET
    assert growth <= bound


def test_the_typed_grpc_batch_is_budgeted_too(bulk_stack):
    import grpc
    from reconrouter.bulk.v1 import bulk_pb2, bulk_pb2_grpc

    stack, client = bulk_stack
    token = client.headers["Authorization"].split(" ", 1)[1]
    request = bulk_pb2.BatchRequest(
        requests=[bulk_pb2.SubRequest(url=f"/v1/exceptions?limit={MAX_PAGE}") for _ in range(5)]
        + [bulk_pb2.SubRequest(url="/v1/exceptions?limit=20")]
    )
    with grpc.insecure_channel(stack.grpc_target) as channel:
        answer = bulk_pb2_grpc.BulkServiceStub(channel).Batch(
            request, metadata=[("authorization", f"Bearer {token}")], timeout=120
        )
    assert [r.status for r in answer.responses] == [413] * 5 + [200]
    assert answer.responses[0].error.message.startswith("ran with status 200")
