"""Every constraint the OpenAPI document states on input is one the server enforces: a value at the
stated bound is accepted, one just beyond it is a 400 naming the field. The bounds are read from
the served document (not written here), so a document that drifts from the server fails."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from jsonschema import Draft202012Validator

CREATE = "/v1/exceptions"


@pytest.fixture(scope="module")
def doc(hard_stack):
    return httpx.get(f"{hard_stack.base_url}/openapi.json", timeout=30).json()


def _component(doc: dict, name: str) -> dict:
    return doc["components"]["schemas"][name]


def _create_input(doc: dict) -> dict:
    return _component(doc, "reconrouter.exceptions.v1.CreateExceptionRequestInput")


def _violations(response: httpx.Response) -> set[str]:
    fields = set()
    for detail in response.json().get("details", []):
        for violation in detail.get("field_violations", []):
            fields.add(violation["field"])
    return fields


def _accepted_and_refused(client, body_ok: dict, body_bad: dict, field: str, path: str = CREATE) -> None:
    ok = client.post(path, json=body_ok)
    assert ok.status_code == 200, (field, ok.text)
    bad = client.post(path, json=body_bad)
    assert bad.status_code == 400, (field, bad.text)
    assert field in _violations(bad) or any(v.startswith(field) for v in _violations(bad)), bad.text


@pytest.mark.parametrize("field", ["transaction_id", "reason", "source"])
def test_create_max_lengths(doc, client, field):
    limit = _create_input(doc)["properties"][field]["maxLength"]
    base = {"transaction_id": "txn-limits"}
    _accepted_and_refused(client, {**base, field: "x" * limit}, {**base, field: "x" * (limit + 1)}, field)


def test_create_requires_a_transaction_id(doc, client):
    schema = _create_input(doc)
    # Documented by its proto name; the lowerCamelCase one (named in the description) works too.
    assert schema["required"] == ["transaction_id"]
    assert client.post(CREATE, json={"transaction_id": "snake"}).status_code == 200
    assert client.post(CREATE, json={"transactionId": "camel"}).status_code == 200
    missing = client.post(CREATE, json={"reason": "no id"})
    assert missing.status_code == 400 and "transaction_id" in _violations(missing)
    # The pattern (some non-space character, no NUL): blank is missing too.
    pattern = re.compile(schema["properties"]["transaction_id"]["pattern"])
    assert not pattern.search("   ") and pattern.search(" x ")
    assert client.post(CREATE, json={"transaction_id": "   "}).status_code == 400


def test_no_input_string_may_hold_nul(doc, client):
    pattern = re.compile(_create_input(doc)["properties"]["reason"]["pattern"])
    assert pattern.search("fine") and not pattern.search("a\x00b")
    fine, nul = {"transaction_id": "t", "reason": "fine"}, {"transaction_id": "t", "reason": "a\x00b"}
    _accepted_and_refused(client, fine, nul, "reason")


def test_bulk_assign_and_resolve_need_their_text(doc, client):
    ids = [str(uuid.uuid4())]
    for path, message, field in (
        ("/v1/exceptions/bulk/assign", "BulkAssignExceptionsRequestInput", "assignee"),
        ("/v1/exceptions/bulk/resolve", "BulkResolveExceptionsRequestInput", "resolution"),
    ):
        schema = _component(doc, f"reconrouter.exceptions.v1.{message}")
        assert field in schema["required"]
        limit = schema["properties"][field]["maxLength"]
        ok = client.post(path, json={"exception_ids": ids, field: "x" * limit})
        assert ok.status_code == 200, ok.text
        for bad_value in ("  ", "x" * (limit + 1)):
            bad = client.post(path, json={"exception_ids": ids, field: bad_value})
            assert bad.status_code == 400 and field in _violations(bad), bad.text
        missing = client.post(path, json={"exception_ids": ids})
        assert missing.status_code == 400 and field in _violations(missing), missing.text


def test_list_dates_are_date_times(doc, client):
    parameters = doc["paths"]["/v1/exceptions"]["get"]["parameters"]
    query = {p["name"]: p["schema"] for p in parameters if "name" in p}
    # A date-time, or empty (an empty query value leaves the field unset).
    assert (
        query["date_from"]["anyOf"]
        == query["date_to"]["anyOf"]
        == [{"format": "date-time"}, {"maxLength": 0}]
    )
    assert client.get(CREATE, params={"date_from": "2026-01-31T00:00:00Z"}).status_code == 200
    assert client.get(CREATE, params={"date_from": ""}).status_code == 200
    bad = client.get(CREATE, params={"date_from": "last tuesday"})
    assert bad.status_code == 400 and "date_from" in _violations(bad)


def test_target_paths_name_one_of_the_target_systems(doc, client):
    get = doc["paths"]["/v1/targets/{target_system}"]["get"]
    [path] = [p for p in get["parameters"] if p.get("in") == "path"]
    assert path["schema"]["enum"] == ["JIRA", "SERVICENOW", "WEBHOOK", "MANUAL"]
    assert client.get("/v1/targets/MANUAL").status_code == 200
    assert client.get("/v1/targets/CARRIER_PIGEON").status_code == 422


def test_create_amount_currency_patterns_and_dependency(doc, client):
    schema = _create_input(doc)
    # An amount (not null) needs a currency (not null); the rule is checked as JSON Schema here.
    [rule] = schema["allOf"]
    validator = Draft202012Validator(rule)
    assert validator.is_valid({"amount": "1", "currency": "EUR"}) and validator.is_valid({"amount": None})
    assert not validator.is_valid({"amount": "1"}) and not validator.is_valid(
        {"amount": "1", "currency": None}
    )
    base = {"transaction_id": "txn-money"}
    ok = {**base, "amount": "1" * 18 + ".1234", "currency": "EUR"}
    _accepted_and_refused(client, ok, {**ok, "amount": "1" * 19}, "amount")
    _accepted_and_refused(client, ok, {**ok, "amount": "1.12345"}, "amount")
    _accepted_and_refused(client, ok, {**ok, "currency": "eur"}, "currency")
    _accepted_and_refused(client, ok, {**base, "amount": "10.00"}, "currency")
    _accepted_and_refused(client, ok, {**base, "amount": "10.00", "currency": None}, "currency")


def test_create_metadata_limits(doc, client):
    metadata = _create_input(doc)["properties"]["metadata"]
    entries, key, value = (
        metadata["maxProperties"],
        metadata["propertyNames"]["maxLength"],
        metadata["additionalProperties"]["maxLength"],
    )
    base = {"transaction_id": "txn-meta"}
    full = {f"k{i}": "v" for i in range(entries)}
    _accepted_and_refused(
        client, {**base, "metadata": full}, {**base, "metadata": {**full, "one-more": "v"}}, "metadata"
    )
    longest_key, too_long_key = {"k" * key: "v"}, {"k" * (key + 1): "v"}
    _accepted_and_refused(
        client, {**base, "metadata": longest_key}, {**base, "metadata": too_long_key}, "metadata"
    )
    longest_value, too_long_value = {"k": "v" * value}, {"k": "v" * (value + 1)}
    _accepted_and_refused(
        client, {**base, "metadata": longest_value}, {**base, "metadata": too_long_value}, "metadata"
    )


def test_list_limit_range_and_sort_enums(doc, client):
    parameters = doc["paths"]["/v1/exceptions"]["get"]["parameters"]
    query = {p["name"]: p["schema"] for p in parameters if "name" in p}
    top = query["limit"]["maximum"]
    assert client.get(CREATE, params={"limit": top}).status_code == 200
    assert client.get(CREATE, params={"limit": query["limit"]["minimum"]}).status_code == 200
    over = client.get(CREATE, params={"limit": top + 1})
    assert over.status_code == 400 and "limit" in _violations(over)
    for value in query["sort_by"]["enum"]:
        assert client.get(CREATE, params={"sort_by": value}).status_code == 200, value
    bad = client.get(CREATE, params={"sort_by": "colour"})
    assert bad.status_code == 400 and "sort_by" in _violations(bad)
    for value in query["sort_order"]["enum"]:
        assert client.get(CREATE, params={"sort_order": value}).status_code == 200, value


def test_uuid_path_ids_and_bulk_id_counts(doc, client):
    get = doc["paths"]["/v1/exceptions/{exception_id}"]["get"]
    [path] = [p for p in get["parameters"] if p.get("in") == "path"]
    assert path["schema"]["format"] == "uuid"
    assert client.get(f"/v1/exceptions/{uuid.uuid4()}").status_code == 404  # valid id, no such row
    refused = client.get("/v1/exceptions/not-a-uuid")
    assert refused.status_code == 400 and "exception_id" in _violations(refused)

    assign = _component(doc, "reconrouter.exceptions.v1.BulkAssignExceptionsRequestInput")
    # A list, or one id alone (the transcoder reads a single value as a list of one).
    ids, one = assign["properties"]["exception_ids"]["anyOf"]
    assert ids["items"]["format"] == one["format"] == "uuid"
    single = client.post(
        "/v1/exceptions/bulk/assign", json={"exception_ids": str(uuid.uuid4()), "assignee": "a"}
    )
    assert single.status_code == 200, single.text
    most = [str(uuid.uuid4()) for _ in range(ids["maxItems"])]
    ok = client.post("/v1/exceptions/bulk/assign", json={"exception_ids": most, "assignee": "a"})
    assert ok.status_code == 200, ok.text
    for wrong in ([], [*most, str(uuid.uuid4())], ["not-a-uuid"]):
        bad = client.post("/v1/exceptions/bulk/assign", json={"exception_ids": wrong, "assignee": "a"})
        assert bad.status_code == 400, bad.text
        assert any(v.startswith("exception_ids") for v in _violations(bad)), bad.text


def test_dispatch_target_system_is_one_of_the_listed(doc, client):
    dispatch = doc["paths"]["/v1/exceptions/{exception_id}/dispatch"]["post"]
    body = dispatch["requestBody"]["content"]["application/json"]["schema"]
    listed = body["properties"]["target_system"]["enum"]
    assert "MANUAL" in listed
    created = client.post(CREATE, json={"transaction_id": "txn-dispatch"}).json()["id"]
    outside = client.post(f"/v1/exceptions/{created}/dispatch", json={"target_system": "CARRIER_PIGEON"})
    assert outside.status_code == 422, outside.text
    manual = client.post(f"/v1/exceptions/{created}/dispatch", json={"target_system": "MANUAL", "queue": "Q"})
    assert manual.status_code in (200, 202), manual.text


def test_unknown_body_fields_are_ignored_but_a_nameless_one_is_refused(doc, client):
    schema = _create_input(doc)
    assert "additionalProperties" not in schema and schema["propertyNames"] == {"minLength": 1}
    assert client.post(CREATE, json={"transaction_id": "t", "colour": "blue"}).status_code == 200
    assert client.post(CREATE, json={"transaction_id": "t", "": 1}).status_code == 400
