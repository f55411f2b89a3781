"""Hypothesis properties of three pieces that every request leans on: the idempotency fingerprint
(server/domain/idempotency.py + the interceptor's deterministic serialization), the REST route table
(server/contract/routes.py) and list cursors (server/domain/paging.py). HYPOTHESIS_EXAMPLES (default 200)
sets the examples per property; `make fuzz` raises it."""

from __future__ import annotations

import json
import os
import random
import urllib.parse

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from server.contract.methods import load_methods
from server.contract.routes import RouteTable, normalize_path
from server.domain.errors import InvalidArgument
from server.domain.idempotency import fingerprint, parse_key
from server.domain.paging import PageAfter, decode_cursor, encode_cursor, parse_sort_value

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "200"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TABLE = RouteTable(load_methods())

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


# -- the idempotency fingerprint -------------------------------------------------------------------


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def respell(document, rng: random.Random):
    """The same JSON body with each field name in either spelling and every object's keys shuffled
    (map keys are data: kept as they are)."""
    if isinstance(document, dict):
        items = list(document.items())
        rng.shuffle(items)
        out = {}
        for key, value in items:
            name = camel(key) if rng.random() < 0.5 else key
            out[name] = value if key == "metadata" else respell(value, rng)
        if "metadata" in document:
            entries = list(document["metadata"].items())
            rng.shuffle(entries)
            out[next(k for k in out if k == "metadata")] = dict(entries)
        return out
    if isinstance(document, list):
        return [respell(v, rng) for v in document]
    return document


create_bodies = st.fixed_dictionaries(
    {"transaction_id": text},
    optional={
        "severity": st.sampled_from(["LOW", "MEDIUM", "HIGH", "CRITICAL"]),
        "reason": text,
        "amount": st.decimals(min_value=0, max_value=10**6, places=2).map(str),
        "currency": st.sampled_from(["USD", "EUR"]),
        "source": text,
        "metadata": st.dictionaries(text, text, max_size=5),
        "due_at": st.datetimes().map(lambda d: d.isoformat() + "Z"),
    },
)


def digest(document: dict, message_type=pb.CreateExceptionRequest) -> str:
    message = json_format.ParseDict(document, message_type())
    return fingerprint(message.SerializeToString(deterministic=True))


@SETTINGS
@given(body=create_bodies, seed=st.integers())
def test_both_spellings_and_any_key_order_give_one_fingerprint(body, seed):
    assert digest(respell(body, random.Random(seed))) == digest(body)
    assert digest(json.loads(json.dumps(body))) == digest(body)


@SETTINGS
@given(a=create_bodies, b=create_bodies)
def test_different_requests_have_different_fingerprints(a, b):
    same_message = json_format.ParseDict(a, pb.CreateExceptionRequest()) == json_format.ParseDict(
        b, pb.CreateExceptionRequest()
    )
    assert (digest(a) == digest(b)) == same_message


@SETTINGS
@given(ids=st.lists(st.uuids().map(str), min_size=1, max_size=5), target=text, queue=text)
def test_bulk_fingerprints_keep_id_order_and_both_spellings(ids, target, queue):
    snake = {"exception_ids": ids, "target_system": target, "queue": queue}
    camel_body = {"exceptionIds": ids, "targetSystem": target, "queue": queue}
    assert digest(snake, pb.BulkDispatchExceptionsRequest) == digest(
        camel_body, pb.BulkDispatchExceptionsRequest
    )
    if len(set(ids)) > 1:  # another order is another request (results keep request order)
        reordered = {**snake, "exception_ids": ids[::-1]}
        assume(ids != ids[::-1])
        assert digest(reordered, pb.BulkDispatchExceptionsRequest) != digest(
            snake, pb.BulkDispatchExceptionsRequest
        )


@SETTINGS
@given(primary=st.none() | st.text(max_size=300), alternative=st.none() | st.text(max_size=300))
def test_idempotency_keys_are_parsed_or_refused_never_anything_else(primary, alternative):
    raw = primary if primary is not None else alternative
    try:
        key = parse_key(primary, alternative)
    except InvalidArgument as error:
        assert error.reason == "INVALID_IDEMPOTENCY_KEY" and raw is not None
        return
    assert key == raw
    if key is not None:
        assert 1 <= len(key) <= 255 and all(c.isascii() and (c.isalnum() or c in ":_-") for c in key)


# -- the route table -------------------------------------------------------------------------------

# Values a path variable can take: any text except the route's literal siblings and dot segments.
segment_values = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda v: v not in (".", "..") and v.strip("/")
)


@pytest.mark.parametrize("route", TABLE.routes, ids=lambda r: f"{r.binding.verb} {r.binding.path}")
@SETTINGS
@given(values=st.lists(segment_values, min_size=3, max_size=3), slashes=st.booleans())
def test_every_route_resolves_to_itself_with_its_variables_decoded(route, values, slashes):
    segments = list(route.segments)
    expected = []
    for variable, value in zip(route.variables, values, strict=False):
        # Envoy's matcher prefers a literal: a value spelling a sibling literal is another route.
        literal_siblings = {
            r.segments[variable.start] for r in TABLE.routes if len(r.segments) > variable.start
        }
        assume(value not in literal_siblings)
        segments[variable.start : variable.end or len(segments)] = [urllib.parse.quote(value, safe="")]
        expected.append((variable.field_path, value))
    path = "/" + "/".join(segments)
    if slashes:  # the connection manager merges slashes and drops a trailing one: so does the table
        path = path.replace("/", "//") + "/"
    match = TABLE.resolve(route.binding.verb, path)
    assert match is not None and match.route == route
    assert list(match.bindings) == expected


@SETTINGS
@given(
    path=st.text(max_size=80), verb=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "get", "HEAD"])
)
def test_any_path_resolves_to_a_route_or_none(path, verb):
    match = TABLE.resolve(verb, path)
    assert match is None or match.route in TABLE.routes
    if match is not None:
        assert match.route.binding.verb == verb.upper()


@SETTINGS
@given(path=st.text(alphabet="/.ab", max_size=30))
def test_normalizing_a_path_is_idempotent(path):
    once = normalize_path(path)
    assert normalize_path("/" + "/".join(once)) == once
    assert "" not in once and "." not in once and ".." not in once


def test_literal_segments_win_over_variables():
    assert TABLE.resolve("POST", "/v1/exceptions/bulk/dispatch").route.method.name == "BulkDispatchExceptions"
    assert TABLE.resolve("GET", "/v1/exceptions/bulk").route.method.name == "GetException"


# -- cursors ---------------------------------------------------------------------------------------

cursor_values = st.integers(min_value=-(2**63), max_value=2**63 - 1) | text


@SETTINGS
@given(scope=text, value=cursor_values, row_id=text)
def test_cursors_round_trip(scope, value, row_id):
    cursor = encode_cursor(scope, PageAfter(value, row_id))
    assert cursor.isascii() and "=" not in cursor and "/" not in cursor and "+" not in cursor
    assert decode_cursor(cursor, scope) == PageAfter(value, row_id)


@SETTINGS
@given(scope=text, other=text, value=cursor_values, row_id=text)
def test_a_cursor_of_another_query_is_refused(scope, other, value, row_id):
    assume(scope != other)
    with pytest.raises(InvalidArgument):
        decode_cursor(encode_cursor(scope, PageAfter(value, row_id)), other)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@SETTINGS
@given(
    raw=st.one_of(
        st.text(max_size=200),
        st.binary(max_size=120).map(lambda b: __import__("base64").urlsafe_b64encode(b).decode()),
        st.fixed_dictionaries({"s": st.just("scope"), "v": json_values, "i": json_values}).map(
            lambda d: __import__("base64").urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
        ),
    ),
    sort_by=st.sampled_from(["created_at", "updated_at", "severity", "status", "id"]),
)
def test_any_cursor_text_decodes_or_is_a_400_never_anything_else(raw, sort_by):
    """A tampered cursor is refused as `cursor: is not a cursor of this query`, including the values
    a database driver could not bind (found: integers beyond 64 bits were a 500)."""
    try:
        after = decode_cursor(raw, "scope")
        if after is not None:
            value = parse_sort_value(after.value, sort_by)
            if sort_by in ("severity", "status"):
                assert value in (1, 2, 3, 4) and value is not True
            elif sort_by in ("created_at", "updated_at"):
                assert value.tzinfo is not None and value.utcoffset().total_seconds() == 0
    except InvalidArgument as error:
        assert error.violations[0].field == "cursor"
