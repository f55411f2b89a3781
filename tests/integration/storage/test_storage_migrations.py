"""Migrations: they build exactly tables.py, run once however often (or concurrently) they are
started, keep stdout clean, and move data they replace (0004: dispatch records -> deliveries)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from server.domain.delivery import DeliveryState
from server.domain.dispatch import TargetSystem, dispatch_key
from server.storage import tables
from server.storage.engine import make_engine
from server.storage.migrate import alembic_config, current_revision, head_revision, upgrade
from server.storage.repositories.exceptions import _to_row
from server.storage.tables import metadata
from server.storage.types import UtcDateTime
from server.storage.uow import SqlUnitOfWorkFactory
from tests.integration.storage.conftest import build_exception
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


# -- 0004: the dispatch records become deliveries -----------------------------------------------------


def upgrade_to(url: str, revision: str) -> None:
    """Like migrate.upgrade, but only as far as `revision`."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = connection.execution_options(write=True)
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


OLD_DISPATCHES = sa.table(  # as 0001 and 0002 made it
    "dispatches",
    sa.column("tenant_id", sa.String),
    sa.column("key", sa.String),
    sa.column("exception_id", sa.Uuid(as_uuid=False)),
    sa.column("target_system", sa.String),
    sa.column("queue", sa.String),
    sa.column("external_reference", sa.String),
    sa.column("acknowledged", sa.Boolean),
    sa.column("created_at", UtcDateTime),
    sa.column("completed_at", UtcDateTime),
    sa.column("claim_id", sa.String),
    sa.column("claimed_at", UtcDateTime),
    sa.column("attempts", sa.Integer),
)
OLD_TARGETS = sa.table(
    "targets", *(sa.column(c.name, c.type) for c in tables.targets.c if c.name != "paused")
)


def insert_as_before_0005(conn, items) -> None:
    """Exceptions as a schema before 0005 holds them (without the SLA columns)."""
    rows = [_to_row(e) for e in items]
    for row in rows:
        del row["due_at_explicit"], row["escalated_at"]
    conn.execute(sa.insert(tables.exceptions), rows)  # only the columns the rows name


def test_0004_moves_dispatch_records_into_deliveries(empty_url):
    upgrade_to(empty_url, "0003")
    assert current_revision(empty_url) == "0003"
    t0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    done, pending = build_exception(), build_exception("tenant-b")
    done_key = dispatch_key(TargetSystem.JIRA, done.id, "REC")
    pending_key = dispatch_key(TargetSystem.WEBHOOK, pending.id, "")
    engine = make_engine(empty_url, pool_size=1)
    try:
        with engine.begin() as conn:
            insert_as_before_0005(conn, [done, pending])
            conn.execute(
                sa.insert(OLD_DISPATCHES),
                [
                    {
                        "tenant_id": done.tenant_id,
                        "key": done_key,
                        "exception_id": done.id,
                        "target_system": "JIRA",
                        "queue": "REC",
                        "external_reference": "REC-7",
                        "acknowledged": True,
                        "created_at": t0,
                        "completed_at": t0 + timedelta(seconds=2),
                        "claim_id": None,
                        "claimed_at": None,
                        "attempts": 2,
                    },
                    {  # called, outcome unknown (its claim was given up)
                        "tenant_id": pending.tenant_id,
                        "key": pending_key,
                        "exception_id": pending.id,
                        "target_system": "WEBHOOK",
                        "queue": "",
                        "external_reference": None,
                        "acknowledged": False,
                        "created_at": t0,
                        "completed_at": None,
                        "claim_id": None,
                        "claimed_at": None,
                        "attempts": 1,
                    },
                ],
            )
            conn.execute(
                sa.insert(OLD_TARGETS),
                {
                    "tenant_id": "tenant-b",
                    "target_system": "WEBHOOK",
                    "settings": {"url": "https://hooks.example"},
                    "secrets": "sealed",
                    "created_at": t0,
                    "updated_at": t0,
                },
            )
        before = datetime.now(UTC)
        upgrade(empty_url)
        after = datetime.now(UTC)
        assert current_revision(empty_url) == head_revision()
        assert not sa.inspect(engine).has_table("dispatches")
        uow = SqlUnitOfWorkFactory(engine)
        with uow(write=False) as u:
            (delivered,) = u.deliveries.get_by_keys(done.tenant_id, [done_key]).values()
            (waiting,) = u.deliveries.get_by_keys(pending.tenant_id, [pending_key]).values()
            target = u.targets.get("tenant-b", TargetSystem.WEBHOOK)
        assert (
            target is not None
            and target.paused is False
            # 0006: a webhook configured before Standard Webhooks keeps the scheme it was signed with
            and target.settings == {"url": "https://hooks.example", "signature_scheme": "HMAC_SHA256_HEX"}
        )
    finally:
        engine.dispose()
    assert (delivered.state, delivered.exception_id, delivered.target_system, delivered.queue) == (
        DeliveryState.DELIVERED,
        done.id,
        TargetSystem.JIRA,
        "REC",
    )
    assert (delivered.external_reference, delivered.acknowledged, delivered.attempt_count) == (
        "REC-7",
        True,
        2,
    )
    assert (delivered.created_at, delivered.delivered_at, delivered.updated_at) == (
        t0,
        t0 + timedelta(seconds=2),
        t0 + timedelta(seconds=2),
    )
    assert (delivered.next_attempt_at, delivered.outcome_unknown, delivered.actor_id) == (
        None,
        False,
        "migration",
    )
    assert (waiting.state, waiting.attempt_count, waiting.outcome_unknown, waiting.external_reference) == (
        DeliveryState.PENDING,
        1,
        True,  # the first worker asks the target for the ticket before creating one
        None,
    )
    assert before <= waiting.next_attempt_at <= after and waiting.delivered_at is None
    assert waiting.tenant_id == "tenant-b" and uuid.UUID(waiting.id) != uuid.UUID(delivered.id)
