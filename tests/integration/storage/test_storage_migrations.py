"""Migrations: they build exactly tables.py, run once however often (or concurrently) they are
started, and keep stdout clean."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from server.storage.engine import make_engine
from server.storage.migrate import current_revision, head_revision, upgrade
from server.storage.tables import metadata
from tests.support.databases import database_urls

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(params=database_urls())
def empty_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    with request.param(tmp_path) as url:
        yield url


def schema_diff(url: str, target: sa.MetaData) -> list:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, target)
    finally:
        engine.dispose()


def test_migrated_schema_matches_tables(empty_url):
    upgrade(empty_url)
    assert schema_diff(empty_url, metadata) == []


def test_the_comparison_would_notice_a_difference(empty_url):
    upgrade(empty_url)
    changed = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["exceptions"].append_column(sa.Column("extra", sa.Integer))
    sa.Index("ix_extra", changed.tables["tokens"].c.name)
    kinds = {diff[0] for diff in schema_diff(empty_url, changed)}
    assert {"add_column", "add_index"} <= kinds


def test_upgrade_is_idempotent(empty_url):
    assert current_revision(empty_url) is None
    upgrade(empty_url)
    assert current_revision(empty_url) == head_revision() is not None
    engine = make_engine(empty_url, pool_size=1)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO tokens (id, tenant_id, name, scopes, token_hash, created_at) "
                "VALUES ('t', 'a', '', '', 'h', CURRENT_TIMESTAMP)"
            )
        upgrade(empty_url)  # a no-op: the row survives
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM tokens").scalar() == 1
    finally:
        engine.dispose()
    assert current_revision(empty_url) == head_revision()


def test_concurrent_upgrades_in_one_process(empty_url):
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run():
        barrier.wait()
        try:
            upgrade(empty_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert current_revision(empty_url) == head_revision()


def test_replicas_starting_together_migrate_once(empty_url):
    """Separate processes: PostgreSQL's advisory lock / SQLite's BEGIN IMMEDIATE serialise them."""
    # Every process waits for the same instant, past its interpreter start-up, so the upgrades
    # really overlap (without the advisory lock PostgreSQL then fails on CREATE TABLE).
    code = (
        "import sys, time; from server.storage.migrate import upgrade; "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); upgrade(sys.argv[1])"
    )
    start_at = str(time.time() + 2)
    procs = [
        subprocess.Popen([sys.executable, "-c", code, empty_url, start_at], cwd=ROOT, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    failures = [p.stderr.read().decode() for p in procs if p.wait(timeout=120) != 0]
    for p in procs:
        p.stderr.close()
    assert failures == []
    assert current_revision(empty_url) == head_revision()
    assert schema_diff(empty_url, metadata) == []


def test_upgrade_keeps_stdout_clean(empty_url, capfd):
    import logging

    logging.getLogger("alembic").setLevel(logging.INFO)  # even when the app logs at INFO
    try:
        upgrade(empty_url)
    finally:
        logging.getLogger("alembic").setLevel(logging.NOTSET)
    assert capfd.readouterr().out == ""
