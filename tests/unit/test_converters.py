from datetime import UTC, datetime, timedelta
from decimal import Decimal

from google.protobuf import json_format
from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from server.domain.bulk import BulkOutcome
from server.domain.delivery import Delivery, DeliveryScheduled, DeliveryState
from server.domain.dispatch import TargetSystem
from server.domain.errors import NotFound
from server.domain.exceptions import NewException, ReconException, Severity, Status
from server.domain.history import Action, HistoryEntry
from server.rpc import converters as conv

NOW = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)


def test_create_request_to_domain_keeps_presence():
    request = pb.CreateExceptionRequest(
        transaction_id="t-1", severity=pb.HIGH, amount="10.50", metadata={"a": "b"}
    )
    request.due_at.FromDatetime(NOW + timedelta(days=1))
    item = conv.new_exception_to_domain(request)
    assert item == NewException(
        "t-1",
        Severity.HIGH,
        amount="10.50",
        currency=None,
        due_at=NOW.replace(microsecond=123456) + timedelta(days=1),
        metadata={"a": "b"},
    )
    bare = conv.new_exception_to_domain(pb.CreateExceptionRequest(transaction_id="t-2"))
    assert (bare.severity, bare.amount, bare.due_at, bare.occurred_at) == (None, None, None, None)


def test_exception_to_proto_prints_bare_enum_words_and_omits_unset_optionals():
    e = ReconException(
        id="6f9619ff-8b86-d011-b42d-00c04fc964ff",
        tenant_id="t",
        transaction_id="txn",
        severity=Severity.CRITICAL,
        status=Status.ASSIGNED,
        created_at=NOW,
        updated_at=NOW,
        occurred_at=NOW,
        amount=Decimal("1250.0000"),
        currency="USD",
        assigned_to="alice",
        metadata={"k": "v"},
    )
    as_json = json_format.MessageToDict(conv.exception_to_proto(e), preserving_proto_field_name=True)
    assert as_json["severity"] == "CRITICAL"
    assert as_json["status"] == "ASSIGNED"
    assert as_json["amount"] == "1250.00"
    assert as_json["created_at"] == "2026-11-23T12:00:00.123456Z"
    assert "external_issue_id" not in as_json and "due_at" not in as_json


def test_status_and_severity_round_trip_every_value():
    for severity in Severity:
        assert conv.severity_to_domain(pb.Severity.Value(severity.name)) is severity
    for status in Status:
        assert conv.status_to_domain(pb.ExceptionStatus.Value(status.name)) is status
    assert conv.severity_to_domain(pb.SEVERITY_UNSPECIFIED) is None


def test_bulk_outcome_to_proto():
    outcome = BulkOutcome(["a", "b"], succeeded=["a"])
    outcome.fail("b", NotFound("exception not found"))
    message = conv.bulk_outcome_to_proto(outcome)
    assert list(message.succeeded) == ["a"]
    assert (message.failed[0].exception_id, message.failed[0].error, message.failed[0].reason) == (
        "b",
        "exception not found",
        "NOT_FOUND",
    )
    assert message.total == 2


def test_history_and_dispatch_to_proto():
    entry = HistoryEntry("h1", "t", "e1", Action.DISPATCH, "tok", NOW, {"queue": "OPS", "n": 1})
    message = conv.history_entry_to_proto(entry)
    assert (message.action, dict(message.changes)) == ("DISPATCH", {"queue": "OPS", "n": 1.0})
    delivered = Delivery(
        "d1",
        "t",
        "k",
        "e1",
        TargetSystem.MANUAL,
        "OPS",
        DeliveryState.DELIVERED,
        NOW,
        NOW,
        "tok",
        attempt_count=1,
        external_reference="MANUAL-1",
        acknowledged=True,
        delivered_at=NOW,
    )
    out = conv.dispatch_to_proto(delivered)
    assert (out.target_system, out.external_reference, out.acknowledged, out.delivery_id) == (
        "MANUAL",
        "MANUAL-1",
        True,
        "d1",
    )
    assert out.dispatched_at.ToDatetime(UTC) == NOW and not out.HasField("next_attempt_at")


def test_a_scheduled_delivery_to_proto_is_not_acknowledged_and_says_when():
    later = NOW + timedelta(seconds=7)
    scheduled = Delivery(
        "d2",
        "t",
        "k",
        "e2",
        TargetSystem.WEBHOOK,
        "",
        DeliveryState.PENDING,
        NOW,
        NOW,
        "tok",
        attempt_count=1,
        next_attempt_at=later,
        acknowledged=True,
    )
    out = conv.dispatch_to_proto(scheduled)
    assert (out.acknowledged, out.external_reference, out.delivery_id) == (False, "", "d2")
    assert out.next_attempt_at.ToDatetime(UTC) == later and not out.HasField("dispatched_at")
    outcome = BulkOutcome(["e2", "e3"])
    outcome.fail("e2", DeliveryScheduled(scheduled))
    outcome.fail("e3", NotFound("exception not found"))
    first, second = conv.bulk_outcome_to_proto(outcome).failed
    assert (first.reason, first.delivery_id, first.next_attempt_at.ToDatetime(UTC)) == (
        "DELIVERY_SCHEDULED",
        "d2",
        later,
    )
    assert (second.reason, second.delivery_id, second.HasField("next_attempt_at")) == ("NOT_FOUND", "", False)


def test_timestamps_match_protobufs_own_conversion_at_the_edges():
    from datetime import timezone

    from google.protobuf import timestamp_pb2

    cases = [
        NOW,
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # negative seconds, positive nanos
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, 0, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    ]
    for value in cases:
        expected = timestamp_pb2.Timestamp()
        expected.FromDatetime(value.astimezone(UTC))
        assert conv.timestamp(value) == expected, value
