"""The delivery's states (server/domain/delivery.py) and the retry schedule (server/delivery/schedule.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.delivery.schedule import RetrySchedule
from server.domain.delivery import (
    ESCALATION_ACTOR,
    MAX_ERROR,
    MAX_REFERENCE,
    Delivery,
    DeliveryFailed,
    DeliveryScheduled,
    DeliveryState,
    clean_text,
    is_retryable_status,
    resolution_key,
)
from server.domain.dispatch import TargetSystem
from server.domain.errors import FailedPrecondition

NOW = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
SAMPLES = 300


def delivery(state: DeliveryState, **fields) -> Delivery:
    values = {
        "id": "d-1",
        "tenant_id": "t",
        "key": "dispatch:JIRA:e-1",
        "exception_id": "e-1",
        "target_system": TargetSystem.JIRA,
        "queue": "",
        "state": state,
        "created_at": NOW,
        "updated_at": NOW,
        "actor_id": "tok",
    }
    values.update(fields)
    return Delivery(**values)


def test_the_kind_of_a_delivery_tells_resolutions_and_escalations_from_dispatches():
    assert delivery(DeliveryState.PENDING).kind == "dispatch"
    assert delivery(DeliveryState.PENDING, actor_id=ESCALATION_ACTOR).kind == "escalation"
    resolution = resolution_key(TargetSystem.JIRA, "e-1", "")
    assert delivery(DeliveryState.PENDING, key=resolution).kind == "resolution"
    assert delivery(DeliveryState.PENDING, key=resolution, actor_id=ESCALATION_ACTOR).kind == "resolution"


# -- states -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [DeliveryState.FAILED, DeliveryState.CANCELLED])
def test_a_failed_or_cancelled_delivery_is_retried_as_a_new_round(state):
    ended = delivery(
        state,
        attempt_count=4,
        horizon_at=NOW,
        lease_owner="w",
        lease_expires_at=NOW,
        last_error="gave up",
        external_reference=None,
    )
    later = NOW + timedelta(hours=1)
    retried = ended.retried(later)
    assert (retried.state, retried.next_attempt_at, retried.horizon_at, retried.updated_at) == (
        DeliveryState.PENDING,
        later,
        None,  # the horizon starts again at the next attempt
        later,
    )
    assert (retried.lease_owner, retried.lease_expires_at) == (None, None)
    assert (retried.attempt_count, retried.id, retried.actor_id) == (4, "d-1", "tok")  # the log goes on
    assert not retried.finished


@pytest.mark.parametrize("state", [DeliveryState.PENDING, DeliveryState.IN_FLIGHT, DeliveryState.DELIVERED])
def test_only_failed_or_cancelled_deliveries_can_be_retried(state):
    with pytest.raises(FailedPrecondition) as err:
        delivery(state).retried(NOW)
    assert err.value.reason == "INVALID_STATE" and state.value in err.value.message


def test_only_a_pending_delivery_can_be_cancelled():
    later = NOW + timedelta(minutes=5)
    cancelled = delivery(DeliveryState.PENDING, next_attempt_at=NOW).cancelled(later)
    assert (cancelled.state, cancelled.next_attempt_at, cancelled.updated_at) == (
        DeliveryState.CANCELLED,
        None,
        later,
    )
    assert cancelled.finished
    for state in (
        DeliveryState.IN_FLIGHT,
        DeliveryState.DELIVERED,
        DeliveryState.FAILED,
        DeliveryState.CANCELLED,
    ):
        with pytest.raises(FailedPrecondition) as err:
            delivery(state).cancelled(NOW)
        assert err.value.reason == "INVALID_STATE"


def test_first_outcomes_are_an_end_or_a_scheduled_retry():
    assert not delivery(DeliveryState.PENDING).has_first_outcome
    assert not delivery(DeliveryState.IN_FLIGHT, attempt_count=1).has_first_outcome
    assert delivery(DeliveryState.PENDING, attempt_count=1).has_first_outcome
    for state in (DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.CANCELLED):
        assert delivery(state).has_first_outcome and delivery(state).finished


def test_per_item_answers_carry_the_delivery_and_a_stable_reason():
    due = NOW + timedelta(seconds=12)
    scheduled = DeliveryScheduled(delivery(DeliveryState.PENDING, next_attempt_at=due, last_error="503"))
    assert scheduled.reason == "DELIVERY_SCHEDULED" and scheduled.delivery.next_attempt_at == due
    assert due.isoformat() in scheduled.message and "(503)" in scheduled.message
    failed = DeliveryFailed(
        delivery(DeliveryState.FAILED, last_error="no project", last_reason="TARGET_REJECTED")
    )
    assert (failed.reason, failed.message) == ("TARGET_REJECTED", "no project")
    bare = DeliveryFailed(delivery(DeliveryState.FAILED))
    assert (bare.reason, bare.message) == ("DELIVERY_FAILED", "delivery to JIRA failed")
    cancelled = DeliveryFailed(delivery(DeliveryState.CANCELLED, last_reason="TARGET_REJECTED"))
    assert (cancelled.reason, cancelled.message) == ("DELIVERY_CANCELLED", "the delivery was cancelled")


def test_retryable_statuses():
    assert [s for s in (400, 401, 403, 404, 408, 409, 410, 422, 425, 429) if is_retryable_status(s)] == [
        408,
        409,
        425,
        429,
    ]
    assert all(is_retryable_status(s) for s in (500, 502, 503, 504, 599))


# -- clean_text ---------------------------------------------------------------------------------------


def test_clean_text_removes_nul_and_control_characters_and_folds_white_space():
    raw = "bad\x00request:\r\n\tfield\x1b[31m  x\x7f\u200b\u2028y"
    cleaned = clean_text(raw, MAX_ERROR)
    assert cleaned == "bad request: field [31m x y"
    assert not any(ord(c) < 32 or ord(c) == 127 for c in cleaned)
    assert clean_text("  \x00 \n ", MAX_ERROR) == ""
    assert clean_text("ünïcode ✓ JIRA-1", MAX_REFERENCE) == "ünïcode ✓ JIRA-1"


def test_clean_text_caps_a_10kb_answer():
    huge = ("<html>" + "x" * 10_000 + "\x00" * 10) * 2
    for limit in (MAX_ERROR, MAX_REFERENCE):
        cleaned = clean_text(huge, limit)
        assert len(cleaned) == limit and cleaned.endswith("…") and cleaned.startswith("<html>x")
    assert clean_text("a" * MAX_ERROR, MAX_ERROR) == "a" * MAX_ERROR  # exactly the limit: kept whole


# -- the retry schedule -------------------------------------------------------------------------------


@pytest.mark.parametrize("retry", [1, 2, 3, 4, 8])
def test_waits_are_full_jitter_up_to_base_times_two_to_the_retry(retry):
    schedule = RetrySchedule(base_seconds=5, max_wait_seconds=3600)
    bound = min(3600, 5 * 2 ** (retry - 1))
    waits = [schedule.wait_before_retry(retry) for _ in range(SAMPLES)]
    assert all(0 <= w <= bound for w in waits)
    # Full jitter: spread over the whole range, not clustered at the bound (chance of failing ~2^-300).
    assert min(waits) < bound / 2 < max(waits)


def test_the_first_three_retries_come_within_35_seconds_of_waiting():
    schedule = RetrySchedule()
    for _ in range(SAMPLES):
        assert sum(schedule.wait_before_retry(n) for n in (1, 2, 3)) <= 35


def test_waits_are_capped_and_retry_numbers_below_one_count_as_the_first():
    schedule = RetrySchedule(base_seconds=5, max_wait_seconds=60)
    assert all(schedule.wait_before_retry(30) <= 60 for _ in range(SAMPLES))
    assert all(schedule.wait_before_retry(0) <= 5 for _ in range(SAMPLES))


def test_retry_after_is_honoured_and_never_sooner():
    schedule = RetrySchedule(base_seconds=5)
    assert all(schedule.wait_before_retry(1, retry_after=120) == 120 for _ in range(SAMPLES))
    # A Retry-After below the backoff does not shorten it.
    waits = [schedule.wait_before_retry(4, retry_after=1) for _ in range(SAMPLES)]
    assert all(1 <= w <= 40 for w in waits) and max(waits) > 20
    when = schedule.next_attempt(1, NOW, NOW + timedelta(days=1), retry_after=90)
    assert when == NOW + timedelta(seconds=90)


def test_next_attempt_within_the_horizon_or_none_past_it():
    schedule = RetrySchedule(base_seconds=5, max_wait_seconds=3600, horizon_seconds=600)
    horizon = schedule.horizon(NOW)
    assert horizon == NOW + timedelta(seconds=600)
    for _ in range(SAMPLES):
        when = schedule.next_attempt(2, NOW, horizon)
        assert when is not None and NOW <= when <= NOW + timedelta(seconds=10)
    assert schedule.next_attempt(1, NOW, horizon, retry_after=601) is None
    assert schedule.next_attempt(1, horizon + timedelta(seconds=1), horizon) is None
    assert schedule.next_attempt(1, NOW, horizon, retry_after=600) == horizon  # at the horizon: still on
