"""Per-tenant call rates over a sliding minute, counted in a store every replica shares.

The estimate is the usual two-window one: calls in the current minute plus the previous minute's
calls weighted by how much of it still lies inside the last 60 seconds. It needs two counters per
tenant instead of a log of every call, and never lets a burst at a minute's edge double the rate
the way a fixed window does.

Two rules, so that a refused client that waits as told gets in:
- Refused calls do not count (as in GitHub's and Stripe's limiters): only admitted calls use up the
  limit, so retrying, however often, never pushes admission further away. The store decides and
  counts in one transaction, so replicas cannot admit past the limit together.
- Retry-After is the time after which a call really is admitted if the tenant sends nothing else
  meanwhile: the earliest moment the estimate, this call included, is within the limit again. The
  previous minute's calls still weigh in full when the next minute starts, so that can be up to two
  minutes away, not merely the end of this one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

from server.domain.errors import RateLimited
from server.services.clock import Clock, utc_now

WINDOW_SECONDS = 60


class CounterStore(Protocol):
    def hit(
        self, tenant_id: str, bucket: str, window: int, admit: Callable[[int, int], bool]
    ) -> tuple[int, int]:
        """Returns (calls in `window` with this one, calls in `window - 1`), and counts this call only
        if `admit` of those two numbers is true (atomically: no other hit in between)."""
        ...


class RateLimiter:
    def __init__(self, store: CounterStore, limits: dict[str, int], clock: Clock = utc_now) -> None:
        self._store = store
        self._limits = {bucket: limit for bucket, limit in limits.items() if limit > 0}
        self._clock = clock

    def check(self, tenant_id: str, bucket: str) -> None:
        """Counts the call, or raises RateLimited (with a Retry-After) when it is over the limit."""
        limit = self._limits.get(bucket)
        if limit is None:
            return
        now = self._clock().timestamp()
        window, elapsed = divmod(now, WINDOW_SECONDS)
        left = WINDOW_SECONDS - elapsed  # how much of the previous minute is still inside the last 60 s

        # Multiplied by WINDOW_SECONDS throughout, so that whole seconds give exact comparisons.
        def admit(current: int, previous: int) -> bool:
            return current * WINDOW_SECONDS + previous * left <= limit * WINDOW_SECONDS

        current, previous = self._store.hit(tenant_id, bucket, int(window), admit)
        if admit(current, previous):
            return
        counted = current - 1  # this call was not counted
        if counted < limit:
            # Room in this minute once enough of the previous one's share has faded out (so previous
            # is not 0, or this call would have been admitted).
            wait = ((counted + 1 - limit) * WINDOW_SECONDS + previous * left) / previous
        else:
            # Not before the next minute, where this minute's calls weigh in full at first and fade
            # out until only limit - 1 of them count.
            wait = left + WINDOW_SECONDS - WINDOW_SECONDS * (limit - 1) / counted
        raise RateLimited(
            f"more than {limit} {bucket} calls a minute for this tenant; retry later",
            retry_after_seconds=max(1, math.ceil(wait)),
        )
