"""storage/direct_read.py against Core: the same rows, the same values and types, on both databases."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event

from server.storage.direct_read import DirectRead
from server.storage.repositories.exceptions import _GET
from server.storage.repositories.tokens import _FIND_BY_HASH
from tests.integration.storage.test_storage_exceptions import full_exception
from tests.integration.storage.test_storage_history_dispatch_tokens import digest


def both(engine, statement, params):
    with engine.connect() as conn:
        direct = DirectRead(statement).first(conn, params)
        core = conn.execute(statement, params).first()
    return direct, core


def test_an_exception_row_reads_the_same_as_through_core(uow, engine, new_exception):
    full, minimal = full_exception(new_exception), new_exception(transaction_id="txn-min")
    with uow(write=True) as u:
        u.exceptions.add_many([full, minimal])
    for item in (full, minimal):
        direct, core = both(engine, _GET, {"tenant_id": item.tenant_id, "id": item.id})
        assert direct is not None and core is not None
        assert direct._asdict() == core._asdict()
        assert [type(v) for v in direct] == [type(v) for v in core]  # Decimal, aware datetime, dict, str
    assert both(engine, _GET, {"tenant_id": "tenant-b", "id": full.id}) == (None, None)


def test_a_token_row_reads_the_same_as_through_core(uow, engine):
    with uow(write=True) as u:
        u.tokens.add("id-1", "tenant-a", "ci", frozenset({"exceptions:read"}), digest("secret-1"))
    direct, core = both(engine, _FIND_BY_HASH, {"token_hash": digest("secret-1")})
    assert direct._asdict() == core._asdict() and direct.id == "id-1"


def test_it_fires_the_statement_event_and_reuses_its_compiled_form(uow, engine, new_exception):
    item = new_exception()
    with uow(write=True) as u:
        u.exceptions.add_many([item])
    seen: list[str] = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731  (conn, cursor, statement, ...)
    event.listen(engine, "before_cursor_execute", listener)
    read = DirectRead(_GET)
    try:
        with engine.connect() as conn:
            for _ in range(3):
                assert read.first(conn, {"tenant_id": item.tenant_id, "id": item.id}).id == item.id
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(seen) == 3 and all(s.lstrip().upper().startswith("SELECT") for s in seen)


def test_a_database_error_surfaces_as_sqlalchemys_own(engine):
    missing = sa.Table("no_such_table", sa.MetaData(), sa.Column("id", sa.Integer))
    statement = sa.select(missing).where(missing.c.id == sa.bindparam("id"))
    with engine.connect() as conn:
        try:
            DirectRead(statement).first(conn, {"id": 1})
        except sa.exc.DBAPIError as error:  # what storage/failures.py translates
            assert "no_such_table" in str(error)
        else:
            raise AssertionError("reading a missing table succeeded")
