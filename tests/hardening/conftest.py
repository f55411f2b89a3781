"""One real stack (server + Envoy, SQLite) shared by the hardening tests that only need REST: the
OpenAPI document as served, the security sweep, hostile input and the fuzzer. Tests that kill,
restart or reconfigure a server start their own."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest

from server.domain.auth import SCOPES
from tests.support.databases import sqlite_database
from tests.support.dispatch import dispatch_stack


@pytest.fixture(scope="session")
def hard_stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("hardening")
    with sqlite_database(work) as url, dispatch_stack(url, work) as stack:
        yield stack


@pytest.fixture(scope="module")
def token(hard_stack, request):
    """A bearer token with every scope, for a tenant of the test module's own."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    return hard_stack.create_token(f"{module}-{uuid.uuid4().hex[:8]}", list(SCOPES))


@pytest.fixture(scope="module")
def client(hard_stack, token):
    with httpx.Client(
        base_url=hard_stack.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as c:
        yield c


@pytest.fixture(scope="module")
def channel(hard_stack):
    with grpc.insecure_channel(hard_stack.grpc_target) as ch:
        yield ch
