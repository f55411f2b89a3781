"""Per-tenant call rates over a sliding minute, counted in a store every replica shares.

The estimate is the usual two-window one: calls in the current minute plus the previous minute's
calls weighted by how much of it still lies inside the last 60 seconds. It needs two counters per
tenant instead of a log of every call, and never lets a burst at a minute's edge double the rate
the way a fixed window does.
"""

from __future__ import annotations

import math
from typing import Protocol

from server.domain.errors import RateLimited
from server.services.clock import Clock, utc_now

WINDOW_SECONDS = 60


class CounterStore(Protocol):
    def hit(self, tenant_id: str, bucket: str, window: int) -> tuple[int, int]:
        """Counts one call in `window`; returns (calls in window, calls in window - 1)."""
        ...


class RateLimiter:
    def __init__(self, store: CounterStore, limits: dict[str, int], clock: Clock = utc_now) -> None:
        self._store = store
        self._limits = {bucket: limit for bucket, limit in limits.items() if limit > 0}
        self._clock = clock

    def check(self, tenant_id: str, bucket: str) -> None:
        """Counts the call; raises RateLimited (with a Retry-After) when it is over the limit."""
        limit = self._limits.get(bucket)
        if limit is None:
            return
        now = self._clock().timestamp()
        window, elapsed = divmod(now, WINDOW_SECONDS)
        current, previous = self._store.hit(tenant_id, bucket, int(window))
        weight = 1 - elapsed / WINDOW_SECONDS
        if current + previous * weight <= limit:
            return
        # When the estimate will fall back to the limit: either the previous window's share fades
        # out enough, or, at the latest, the next window starts.
        wait = WINDOW_SECONDS - elapsed
        if previous and current <= limit:
            wait = min(wait, (current + previous * weight - limit) / previous * WINDOW_SECONDS)
        raise RateLimited(
            f"more than {limit} {bucket} calls a minute for this tenant; retry later",
            retry_after_seconds=max(1, math.ceil(wait)),
        )
