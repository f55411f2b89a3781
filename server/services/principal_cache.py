"""A short-lived memory of tokens that authenticated, so a busy caller is not looked up on every call.

Only successes are kept (an unknown token always reaches the database, and cannot fill memory),
keyed by the token's hash, never its plaintext. An entry lives `ttl` seconds: a token revoked
elsewhere (the CLI, another replica) keeps working on this process at most that long; revoking
through this process forgets it at once (a lookup that raced the revocation may still keep it, again
for at most `ttl`). `ttl` 0 turns the cache off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from server.domain.auth import Principal


class PrincipalCache:
    def __init__(
        self, ttl: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._ttl > 0

    def get(self, token_hash: str) -> Principal | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        principal, expires = entry
        if self._clock() >= expires:
            with self._lock:
                self._entries.pop(token_hash, None)
            return None
        return principal

    def put(self, token_hash: str, principal: Principal) -> None:
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._evict(now)
            self._entries[token_hash] = (principal, now + self._ttl)

    def forget_token(self, token_id: str) -> None:
        with self._lock:
            for key in [k for k, (p, _) in self._entries.items() if p.token_id == token_id]:
                del self._entries[key]

    def _evict(self, now: float) -> None:
        # Expired entries first; if every entry is live, the oldest half (insertion order) goes.
        for key in [k for k, (_, expires) in self._entries.items() if expires <= now]:
            del self._entries[key]
        if len(self._entries) >= self._max_entries:
            for key in list(self._entries)[: max(1, len(self._entries) // 2)]:
                del self._entries[key]
