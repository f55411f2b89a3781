"""Who is calling: a token belongs to one tenant and carries scopes."""

from __future__ import annotations

from dataclasses import dataclass

SCOPES = ("exceptions:read", "exceptions:write", "exceptions:dispatch", "targets:admin")


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    token_id: str
    scopes: frozenset[str]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
