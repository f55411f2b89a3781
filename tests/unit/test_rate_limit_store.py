"""RateLimiter over FakeCounterStore, which prunes windows like SqlCounterStore. (test_rate_limit.py
covers the limits themselves; these are the rules that involve what the store keeps.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.domain.errors import RateLimited
from server.services.rate_limit import RateLimiter
from tests.unit.fakes import Clock, FakeCounterStore

MINUTE_600 = datetime.fromtimestamp(600 * 60, UTC)


def refused(limiter: RateLimiter, tenant: str = "t") -> int | None:
    """The Retry-After of a refused call, None when admitted."""
    try:
        limiter.check(tenant, "dispatch")
    except RateLimited as err:
        return err.retry_after_seconds
    return None


def test_refused_calls_do_not_count():
    clock = Clock(MINUTE_600 + timedelta(seconds=30))
    limiter = RateLimiter(FakeCounterStore(), {"dispatch": 2}, clock)
    assert [refused(limiter) is None for _ in range(4)] == [True, True, False, False]
    clock.now = MINUTE_600 + timedelta(seconds=60 + 30)  # half of the previous minute's 2 calls count
    assert refused(limiter) is None  # 1 + 2 * 0.5 <= 2; it would be refused had all 4 been counted


def test_a_quiet_minute_in_between_forgets_everything():
    store = FakeCounterStore()
    clock = Clock(MINUTE_600 + timedelta(seconds=59))
    limiter = RateLimiter(store, {"dispatch": 3}, clock)
    for _ in range(5):
        refused(limiter)
    clock.now = MINUTE_600 + timedelta(minutes=2)
    assert [refused(limiter) for _ in range(3)] == [None, None, None]
    assert store.calls == {("t", "dispatch", 602): 3}  # minute 600 was dropped, 601 never existed


def test_the_retry_after_of_a_fading_previous_minute_is_its_share_over_the_limit():
    clock = Clock(MINUTE_600)
    limiter = RateLimiter(FakeCounterStore(), {"dispatch": 10}, clock)
    for _ in range(10):
        limiter.check("t", "dispatch")
    clock.now = MINUTE_600 + timedelta(seconds=75)  # 15 s into the next minute: 10 * 0.75 still count
    assert [refused(limiter) for _ in range(3)] == [None, None, 3]  # (3 + 7.5 - 10) / 10 * 60 s


def test_a_client_that_waits_retry_after_is_admitted():
    clock = Clock(MINUTE_600 + timedelta(seconds=10))
    limiter = RateLimiter(FakeCounterStore(), {"dispatch": 3}, clock)
    for _ in range(3):
        limiter.check("t", "dispatch")
    wait = refused(limiter)
    # Not the 50 s left of this minute: minute 600's 3 calls weigh in full when 601 starts, and only
    # 20 s into it (1 + 3 * 40/60 = 3) does a call fit.
    assert wait == 70
    clock.now += timedelta(seconds=wait - 1)
    assert refused(limiter) == 1  # a second early is too early, and is not counted either
    clock.now += timedelta(seconds=1)
    assert refused(limiter) is None


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 50])
def test_retry_after_is_the_first_whole_second_a_call_is_admitted(limit):
    """Whatever the previous minute held and wherever in the minute the limit is hit."""
    for earlier in sorted({0, 1, limit // 2, limit}):
        for start in range(0, 60, 7):
            store = FakeCounterStore()
            clock = Clock(MINUTE_600 + timedelta(seconds=start))
            limiter = RateLimiter(store, {"dispatch": limit}, clock)
            for _ in range(earlier):
                refused(limiter)
            clock.now += timedelta(seconds=60)
            while (wait := refused(limiter)) is None:
                pass
            at = clock.now
            clock.now = at + timedelta(seconds=wait - 1)
            assert refused(limiter) is not None, (earlier, start, wait)
            clock.now = at + timedelta(seconds=wait)
            assert refused(limiter) is None, (earlier, start, wait)
            assert wait <= 2 * 60
