"""API tokens, looked up by the SHA-256 of the presented token (the plaintext is never stored)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.storage.direct_read import DirectRead
from server.storage.tables import tokens as t

if TYPE_CHECKING:
    from server.domain.ports import TokenRecord, TokenRepository

# Every authenticated call runs this: built once (see the exceptions repository's _GET).
_FIND_BY_HASH = sa.select(t.c.id, t.c.tenant_id, t.c.name, t.c.scopes, t.c.revoked_at).where(
    t.c.token_hash == sa.bindparam("token_hash")
)


@dataclass(frozen=True)
class TokenRow:
    """Satisfies server.domain.ports.TokenRecord."""

    id: str
    tenant_id: str
    name: str
    scopes: frozenset[str]
    revoked_at: datetime | None


_FIND_DIRECT = DirectRead(_FIND_BY_HASH)


class SqlTokenRepository:
    def __init__(self, connection: Connection, *, direct_reads: bool = False) -> None:
        self._conn = connection
        self._direct_reads = direct_reads  # see SqlExceptionRepository

    def add(self, token_id: str, tenant_id: str, name: str, scopes: frozenset[str], token_hash: str) -> None:
        self._conn.execute(
            sa.insert(t).values(
                id=token_id,
                tenant_id=tenant_id,
                name=name,
                scopes=",".join(sorted(scopes)),
                token_hash=token_hash,
                created_at=datetime.now(UTC),
                revoked_at=None,
            )
        )

    def find_by_hash(self, token_hash: str) -> TokenRow | None:
        params = {"token_hash": token_hash}
        if self._direct_reads:
            row = _FIND_DIRECT.first(self._conn, params)
        else:
            row = self._conn.execute(_FIND_BY_HASH, params).first()
        if row is None:
            return None
        scopes = frozenset(s for s in row.scopes.split(",") if s)
        return TokenRow(row.id, row.tenant_id, row.name, scopes, row.revoked_at)

    def revoke(self, token_id: str, now: datetime) -> bool:
        """False when there is no such token or it is already revoked."""
        stmt = sa.update(t).where(t.c.id == token_id, t.c.revoked_at.is_(None)).values(revoked_at=now)
        return self._conn.execute(stmt).rowcount == 1

    def count(self) -> int:
        return self._conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()


# Conformance: mypy checks the adapter against the protocol it implements (nothing runs).
if TYPE_CHECKING:

    def _repository_conforms(repository: SqlTokenRepository) -> TokenRepository:
        return repository

    def _row_conforms(row: TokenRow) -> TokenRecord:
        return row
