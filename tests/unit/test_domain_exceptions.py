from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from server.domain.errors import FailedPrecondition, InvalidArgument
from server.domain.exceptions import (
    NewException,
    Severity,
    Status,
    build_exception,
    classify_severity,
    format_amount,
    parse_uuid,
    validate_new_exception,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("amount", "age_hours", "expected"),
    [
        (None, 0, Severity.LOW),
        ("999.99", 23.9, Severity.LOW),
        ("1000", 0, Severity.MEDIUM),
        (None, 24, Severity.MEDIUM),
        ("9999.99", 71, Severity.MEDIUM),
        ("10000", 0, Severity.HIGH),
        (None, 72, Severity.HIGH),
        ("99999.99", 0, Severity.HIGH),
        ("100000", 0, Severity.CRITICAL),
        ("5", 120, Severity.CRITICAL),
    ],
)
def test_classification_thresholds(amount, age_hours, expected):
    value = Decimal(amount) if amount is not None else None
    assert classify_severity(value, timedelta(hours=age_hours)) is expected


def test_build_classifies_from_occurred_at_when_severity_omitted():
    item = NewException("t-1", occurred_at=NOW - timedelta(hours=80))
    built = build_exception("tenant", item, NOW)
    assert built.severity is Severity.HIGH
    assert built.status is Status.OPEN
    assert built.occurred_at == NOW - timedelta(hours=80)


def test_explicit_severity_wins_over_classification():
    built = build_exception(
        "tenant", NewException("t-1", severity=Severity.LOW, amount="500000", currency="USD"), NOW
    )
    assert built.severity is Severity.LOW


def test_lifecycle_assign_then_resolve_and_resolved_is_final():
    e = build_exception("tenant", NewException("t-1"), NOW)
    assigned = e.assign("alice", NOW)
    assert (assigned.status, assigned.assigned_to) == (Status.ASSIGNED, "alice")
    resolved = assigned.resolve("written off", "duplicate", NOW)
    assert resolved.status is Status.RESOLVED
    for change in (lambda: resolved.assign("bob", NOW), lambda: resolved.resolve("x", None, NOW)):
        with pytest.raises(FailedPrecondition) as err:
            change()
        assert err.value.reason == "INVALID_STATE"
        assert err.value.message == "exception is resolved"


def test_validation_collects_every_violation_with_field_names():
    bad = NewException(
        transaction_id="",
        amount="12.345678",
        currency="usd",
        reason="x" * 1001,
        metadata={"k" * 65: "v"},
    )
    with pytest.raises(InvalidArgument) as err:
        validate_new_exception(bad, NOW, prefix="exceptions[2].")
    fields = {v.field for v in err.value.violations}
    assert fields == {
        "exceptions[2].transaction_id",
        "exceptions[2].amount",
        "exceptions[2].currency",
        "exceptions[2].reason",
        "exceptions[2].metadata",
    }


def test_amount_requires_currency_and_occurred_at_not_in_future():
    with pytest.raises(InvalidArgument) as err:
        validate_new_exception(NewException("t", amount="10.00", occurred_at=NOW + timedelta(days=1)), NOW)
    assert {v.field for v in err.value.violations} == {"currency", "occurred_at"}


@pytest.mark.parametrize(
    ("stored", "shown"),
    [("1250", "1250.00"), ("1250.5", "1250.50"), ("0.1234", "0.1234"), ("7.1000", "7.10")],
)
def test_amount_format(stored, shown):
    assert format_amount(Decimal(stored)) == shown


def test_parse_uuid_canonicalises_and_refuses_garbage():
    upper = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
    assert parse_uuid(upper, "id") == upper.lower()
    with pytest.raises(InvalidArgument) as err:
        parse_uuid("not-a-uuid", "exception_id")
    assert err.value.violations[0].field == "exception_id"
