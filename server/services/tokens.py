"""API tokens: created once (plaintext shown once), stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from server.domain.auth import SCOPES, Principal
from server.domain.errors import InvalidArgument, NotFound, Unauthenticated
from server.domain.ports import UnitOfWorkFactory
from server.services.clock import Clock, utc_now
from server.services.principal_cache import PrincipalCache

TOKEN_PREFIX = "rr_"
# The widths of the tokens table's columns (server/storage/tables.py): longer is a database error.
TENANT_MAX = 64
NAME_MAX = 255


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a plain (unsalted) digest is enough to make the table useless
    # to a thief, and it keeps lookup a single indexed equality.
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    def __init__(
        self, uow: UnitOfWorkFactory, clock: Clock = utc_now, cache: PrincipalCache | None = None
    ) -> None:
        self._uow = uow
        self._clock = clock
        # Off unless given (AUTH_CACHE_SECONDS): see principal_cache.py for what it trades.
        self._cache = cache or PrincipalCache(0)

    def create(self, tenant_id: str, scopes: list[str], name: str = "") -> tuple[str, str]:
        """Returns (token id, plaintext token). The plaintext is never stored."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise InvalidArgument.field("scopes", f"unknown scope(s) {', '.join(unknown)}; use {SCOPES}")
        tenant_id = tenant_id.strip()
        if not tenant_id or len(tenant_id) > TENANT_MAX:
            raise InvalidArgument.field("tenant", f"must be 1-{TENANT_MAX} characters")
        if len(name) > NAME_MAX:
            raise InvalidArgument.field("name", f"must be at most {NAME_MAX} characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = str(uuid.uuid4())
        with self._uow(write=True) as uow:
            uow.tokens.add(token_id, tenant_id, name, frozenset(scopes), hash_token(token))
        return token_id, token

    def revoke(self, token_id: str) -> None:
        with self._uow(write=True) as uow:
            if not uow.tokens.revoke(token_id, self._clock()):
                raise NotFound(f"no active token {token_id}")
        self._cache.forget_token(token_id)

    def authenticate(self, token: str) -> Principal:
        token_hash = hash_token(token)
        principal = self._cache.get(token_hash)
        if principal is not None:
            return principal
        with self._uow(write=False) as uow:
            record = uow.tokens.find_by_hash(token_hash)
        if record is None or record.revoked_at is not None:
            raise Unauthenticated("the token is unknown or revoked")
        principal = Principal(record.tenant_id, record.id, frozenset(record.scopes))
        self._cache.put(token_hash, principal)
        return principal

    def count(self) -> int:
        with self._uow(write=False) as uow:
            return uow.tokens.count()
