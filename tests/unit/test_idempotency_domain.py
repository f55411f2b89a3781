"""The plain rules of idempotency keys: format, fingerprint, and what a repeat means."""

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import json_format
from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from server.domain.errors import ErrorKind, InvalidArgument
from server.domain.idempotency import (
    Decision,
    KeyInUse,
    KeyRecord,
    KeyReused,
    KeyScope,
    KeyState,
    Policy,
    decide,
    fingerprint,
    parse_key,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = Policy.of_seconds(ttl=3600, lock_timeout=60)
SCOPE = KeyScope("t", "/pkg.S/M", "k")


@pytest.mark.parametrize("key", ["a", "A-z_0:9", "x" * 255, "2026-01-01:retry_3"])
def test_well_formed_keys_are_accepted(key):
    assert parse_key(key, None) == key


@pytest.mark.parametrize("key", ["", "x" * 256, "a b", "key/1", "é", "a.b", "k\n"])
def test_malformed_keys_are_400_invalid_idempotency_key(key):
    with pytest.raises(InvalidArgument) as err:
        parse_key(key, None)
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT
    assert err.value.reason == "INVALID_IDEMPOTENCY_KEY"
    assert err.value.violations[0].field == "X-Idempotency-Key"


def test_the_alternative_header_counts_only_when_the_first_is_absent():
    assert parse_key(None, "alt") == "alt"
    assert parse_key("main", "alt") == "main"
    with pytest.raises(InvalidArgument) as refused:
        parse_key("main", "not a key")  # the second header is not read, but a malformed one is a bug
    assert refused.value.violations[0].field == "Idempotency-Key"
    assert parse_key(None, None) is None
    with pytest.raises(InvalidArgument):
        parse_key("", "alt")  # present but empty is a broken key, not a missing one


def test_a_route_that_needs_a_key_refuses_a_call_without_one():
    with pytest.raises(InvalidArgument) as err:
        parse_key(None, None, required=True)
    assert err.value.reason == "INVALID_IDEMPOTENCY_KEY"
    assert parse_key(None, "k", required=True) == "k"


def canonical(message) -> bytes:
    return message.SerializeToString(deterministic=True)


def test_both_json_spellings_of_one_body_have_one_fingerprint():
    ids = ["5b0c2a6e-6c1f-4e0e-9a3c-1f2d3e4f5a6b", "0f4c2a6e-6c1f-4e0e-9a3c-1f2d3e4f5a6b"]
    snake = json_format.Parse(
        f'{{"exception_ids": ["{ids[0]}", "{ids[1]}"], "target_system": "MANUAL"}}',
        pb.BulkDispatchExceptionsRequest(),
    )
    camel = json_format.Parse(
        f'{{"targetSystem": "MANUAL", "exceptionIds": ["{ids[0]}", "{ids[1]}"]}}',
        pb.BulkDispatchExceptionsRequest(),
    )
    assert fingerprint(canonical(snake)) == fingerprint(canonical(camel))
    other = pb.BulkDispatchExceptionsRequest(exception_ids=ids[::-1], target_system="MANUAL")
    assert fingerprint(canonical(other)) != fingerprint(canonical(snake))  # order of ids matters


def test_map_insertion_order_does_not_change_the_fingerprint():
    one = pb.CreateExceptionRequest(transaction_id="t")
    one.metadata["a"], one.metadata["b"] = "1", "2"
    two = pb.CreateExceptionRequest(transaction_id="t")
    two.metadata["b"], two.metadata["a"] = "2", "1"
    assert fingerprint(canonical(one)) == fingerprint(canonical(two))
    assert len(fingerprint(b"")) == 64  # fits the fingerprint column


def record(state=KeyState.COMPLETED, fp="f", locked_at=NOW, expires_at=NOW + timedelta(hours=1)):
    return KeyRecord(SCOPE, fp, state, locked_at, expires_at, b"r", "T")


def test_a_completed_key_with_the_same_request_is_replayed():
    assert decide(record(), "f", NOW, POLICY) is Decision.REPLAY


def test_a_completed_key_with_another_request_is_reused():
    with pytest.raises(KeyReused) as err:
        decide(record(), "g", NOW, POLICY)
    assert (err.value.kind, err.value.reason) == (ErrorKind.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")


def test_a_live_claim_is_in_use_for_the_same_request_and_reused_for_another():
    live = record(KeyState.IN_PROGRESS, locked_at=NOW - timedelta(seconds=59))
    with pytest.raises(KeyInUse) as err:
        decide(live, "f", NOW, POLICY)
    assert (err.value.kind, err.value.reason) == (ErrorKind.CONFLICT, "IDEMPOTENCY_KEY_IN_USE")
    with pytest.raises(KeyReused):
        decide(live, "g", NOW, POLICY)


def test_a_claim_older_than_the_lock_timeout_is_free_for_any_request():
    abandoned = record(KeyState.IN_PROGRESS, locked_at=NOW - timedelta(seconds=60))
    assert decide(abandoned, "f", NOW, POLICY) is Decision.TAKE_OVER
    assert decide(abandoned, "g", NOW, POLICY) is Decision.TAKE_OVER


def test_an_expired_key_behaves_as_new():
    expired = record(expires_at=NOW)
    assert decide(expired, "f", NOW, POLICY) is Decision.TAKE_OVER
    assert decide(expired, "g", NOW, POLICY) is Decision.TAKE_OVER


def test_policy_needs_positive_durations_and_claims_outlive_the_lock_timeout():
    with pytest.raises(ValueError):
        Policy.of_seconds(ttl=0, lock_timeout=60)
    short_ttl = Policy.of_seconds(ttl=1, lock_timeout=60)
    assert short_ttl.claim_expiry(NOW) == NOW + timedelta(seconds=60)
