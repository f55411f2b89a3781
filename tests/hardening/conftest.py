"""One real stack (server + Envoy, SQLite) shared by the hardening tests that only need REST: the
OpenAPI document as served, the security sweep, hostile input and the fuzzer. Tests that kill,
restart or reconfigure a server start their own."""

from __future__ import annotations

import pytest

from tests.support.databases import sqlite_database
from tests.support.dispatch import dispatch_stack


@pytest.fixture(scope="session")
def hard_stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("hardening")
    with sqlite_database(work) as url, dispatch_stack(url, work) as stack:
        yield stack
