from datetime import UTC, datetime

import pytest

from server.domain.errors import RateLimited
from server.services.rate_limit import RateLimiter


class DictStore:
    def __init__(self):
        self.calls = {}

    def hit(self, tenant_id, bucket, window, admit):
        key = (tenant_id, bucket)
        current, previous = self.calls.get((*key, window), 0) + 1, self.calls.get((*key, window - 1), 0)
        if admit(current, previous):
            self.calls[(*key, window)] = current
        return current, previous


class Clock:
    def __init__(self, seconds):
        self.seconds = seconds

    def __call__(self):
        return datetime.fromtimestamp(self.seconds, UTC)


def test_allows_up_to_the_limit_then_refuses_with_retry_after():
    clock = Clock(600 * 60 + 10)  # 10 s into a minute
    limiter = RateLimiter(DictStore(), {"dispatch": 3}, clock)
    for _ in range(3):
        limiter.check("t", "dispatch")
    with pytest.raises(RateLimited) as err:
        limiter.check("t", "dispatch")
    assert err.value.reason == "RATE_LIMITED"
    # Not the rest of this minute (50 s): when the next one starts these 3 calls still weigh in
    # full; 20 s into it only 2 of them count, and a fourth call fits.
    assert err.value.retry_after_seconds == 70


def test_tenants_and_buckets_are_counted_apart_and_zero_means_off():
    limiter = RateLimiter(DictStore(), {"dispatch": 1, "other": 0}, Clock(0))
    limiter.check("a", "dispatch")
    limiter.check("b", "dispatch")
    for _ in range(5):
        limiter.check("a", "other")
        limiter.check("a", "unlimited")


def test_previous_minute_still_counts_by_its_remaining_share():
    store = DictStore()
    clock = Clock(100 * 60 + 59)
    limiter = RateLimiter(store, {"dispatch": 10}, clock)
    for _ in range(10):
        limiter.check("t", "dispatch")
    clock.seconds = 101 * 60 + 15  # a quarter into the next minute: 75 % of 10 = 7.5 still count
    limiter.check("t", "dispatch")
    limiter.check("t", "dispatch")  # 2 + 7.5 = 9.5 <= 10
    with pytest.raises(RateLimited) as err:
        limiter.check("t", "dispatch")  # 3 + 7.5 > 10
    assert 1 <= err.value.retry_after_seconds <= 45
    clock.seconds = 102 * 60 + 1  # the burst has slid out of the window
    limiter.check("t", "dispatch")
