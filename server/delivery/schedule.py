"""When a delivery is tried again: exponential backoff with full jitter (tenacity's
wait_random_exponential), the target's Retry-After honoured, and a horizon after which it fails.

With the defaults (base 5 s) the waits before retries 1, 2, 3 are drawn from [0, 5], [0, 10] and
[0, 20] seconds, so the first three retries fall within 35 s of waiting after the first attempt
(API.md §7: within a minute); later waits double up to DELIVERY_RETRY_MAX_WAIT (1 h), until
DELIVERY_RETRY_HORIZON (24 h) after the first attempt of the round.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import tenacity

_NO_RETRYING = tenacity.Retrying()


class RetrySchedule:
    def __init__(
        self, base_seconds: float = 5.0, max_wait_seconds: float = 3600.0, horizon_seconds: float = 86400.0
    ) -> None:
        self.base_seconds = base_seconds
        self.max_wait_seconds = max_wait_seconds
        self.horizon_seconds = horizon_seconds
        # Full jitter: uniform(0, min(max, base * 2 ** (n - 1))) for the n-th retry.
        self._wait = tenacity.wait_random_exponential(multiplier=base_seconds, max=max_wait_seconds)

    def horizon(self, first_attempt_at: datetime) -> datetime:
        return first_attempt_at + timedelta(seconds=self.horizon_seconds)

    def wait_before_retry(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before the retry_number-th retry (1 = the one after the first attempt)."""
        # tenacity's wait strategies read only the attempt number of the call state they are given.
        state = tenacity.RetryCallState(retry_object=_NO_RETRYING, fn=None, args=(), kwargs={})
        state.attempt_number = max(1, retry_number)
        wait = float(self._wait(state))
        if retry_after is not None:
            # The target said when: not sooner, and no jitter below it.
            wait = max(wait, retry_after)
        return wait

    def next_attempt(
        self, retry_number: int, now: datetime, horizon_at: datetime, retry_after: float | None = None
    ) -> datetime | None:
        """When to try again, or None when that would be past the horizon (the delivery fails)."""
        when = now + timedelta(seconds=self.wait_before_retry(retry_number, retry_after))
        return when if when <= horizon_at else None
