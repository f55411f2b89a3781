import uuid

import pytest

from server.domain.bulk import BulkOutcome, unique_ids
from server.domain.dispatch import TargetSystem, dispatch_key, parse_target_request
from server.domain.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from server.domain.paging import PageAfter, decode_cursor, encode_cursor, parse_limit, parse_sort


def test_unique_ids_collapses_duplicates_and_keeps_first_seen_order():
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    assert unique_ids([b, a, b.upper(), a]) == [b, a]


@pytest.mark.parametrize("count", [0, 101])
def test_unique_ids_count_limits(count):
    with pytest.raises(InvalidArgument) as err:
        unique_ids([str(uuid.uuid4()) for _ in range(count)])
    assert err.value.violations[0].field == "exception_ids"


def test_unique_ids_names_each_bad_id():
    with pytest.raises(InvalidArgument) as err:
        unique_ids([str(uuid.uuid4()), "nope", "also-bad"])
    assert [v.field for v in err.value.violations] == ["exception_ids[1]", "exception_ids[2]"]


def test_outcome_restores_request_order():
    ids = ["a", "b", "c", "d"]
    outcome = BulkOutcome(ids)
    outcome.succeeded += ["d", "b"]
    outcome.fail("c", NotFound("exception not found"))
    outcome.fail("a", NotFound("exception not found"))
    outcome.in_request_order()
    assert outcome.succeeded == ["b", "d"]
    assert [f.exception_id for f in outcome.failed] == ["a", "c"]
    assert outcome.total == 4


def test_target_names_are_case_insensitive_and_unknown_ones_refused():
    assert parse_target_request(" jira ", " PROJ ") == (TargetSystem.JIRA, "PROJ")
    with pytest.raises(FailedPrecondition) as err:
        parse_target_request("EMAIL", "")
    assert err.value.reason == "UNSUPPORTED_TARGET_SYSTEM"
    with pytest.raises(InvalidArgument) as err:
        parse_target_request("x" * 256, "q" * 256)
    assert {v.field for v in err.value.violations} == {"target_system", "queue"}


def test_dispatch_key_is_deterministic_and_includes_queue_when_given():
    assert dispatch_key(TargetSystem.JIRA, "id-1", "") == "dispatch:JIRA:id-1"
    assert dispatch_key(TargetSystem.JIRA, "id-1", "OPS") == "dispatch:JIRA:id-1:OPS"


def test_cursor_round_trip_and_scope_check():
    cursor = encode_cursor("created_at:desc:abc", PageAfter("2026-01-01T00:00:00.000000+00:00", "id-9"))
    assert decode_cursor(cursor, "created_at:desc:abc") == PageAfter(
        "2026-01-01T00:00:00.000000+00:00", "id-9"
    )
    with pytest.raises(InvalidArgument):
        decode_cursor(cursor, "created_at:asc:abc")
    for garbage in ("%%%", "bm90IGpzb24", "e30"):
        with pytest.raises(InvalidArgument):
            decode_cursor(garbage, "created_at:desc:abc")


def test_limit_and_sort_validation():
    v = Violations()
    assert parse_limit(0, v) == 20
    assert parse_limit(200, v) == 200
    parse_limit(201, v)
    parse_sort("amount", "sideways", v)
    with pytest.raises(InvalidArgument) as err:
        v.raise_if_any()
    assert [x.field for x in err.value.violations] == ["limit", "sort_by", "sort_order"]
    assert parse_sort("", "", Violations()) == ("created_at", True)
