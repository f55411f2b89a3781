"""JSON bodies Envoy's transcoder (1.40) would read as nothing, which the document does not allow:
each is refused with 400 INVALID_ARGUMENT naming the field (server/contract/json_rules.py), by
Envoy's Lua filter (rest_body_check) and by /v1/bulk alike. (method, path, body text, field, message)."""

from __future__ import annotations

UUID = "0b6f3e0e-8a53-4a8e-9d0b-6f1c2a3e4d5f"
TIMESTAMP_OBJECT = "invalid value {...}: a google.protobuf.Timestamp is not a JSON object"
NULL_ITEM = "invalid value null: a list item cannot be null"
LIST_ITEM = "invalid value [...]: a list item cannot be a list"

REFUSED = [
    # The transcoder drops a null item (["a", null] is ["a"]; [null] is []).
    (
        "POST",
        "/v1/exceptions/bulk/assign",
        f'{{"exception_ids": ["{UUID}", null], "assignee": "a"}}',
        "exception_ids[1]",
        NULL_ITEM,
    ),
    (
        "POST",
        "/v1/exceptions/bulk/resolve",
        '{"exceptionIds": [null, null], "resolution": "r"}',
        "exception_ids[0]",
        NULL_ITEM,
    ),
    (
        "POST",
        "/v1/exceptions/bulk/create",
        '{"exceptions": [{"transaction_id": "t"}, null]}',
        "exceptions[1]",
        NULL_ITEM,
    ),
    (
        "POST",
        "/v1/routing-rules",
        '{"name": "n", "priority": 1, "conditions": {"severities": ["HIGH", null]},'
        ' "action": {"target_system": "MANUAL", "queue": "q"}}',
        "conditions.severities[1]",
        NULL_ITEM,
    ),
    ("POST", "/v1/bulk", '{"requests": [null]}', "requests[0]", NULL_ITEM),
    # ... and flattens a list inside a list ([["a"]] is ["a"]).
    ("POST", "/v1/deliveries/bulk/retry", f'{{"delivery_ids": [["{UUID}"]]}}', "delivery_ids[0]", LIST_ITEM),
    ("POST", "/v1/exceptions/bulk/dispatch", '{"exception_ids": [ [] ]}', "exception_ids[0]", LIST_ITEM),
    # ... reads an object for a Timestamp as its fields ({} is 1970-01-01T00:00:00Z).
    ("POST", "/v1/exceptions", '{"transaction_id": "t", "occurred_at": {}}', "occurred_at", TIMESTAMP_OBJECT),
    (
        "POST",
        "/v1/exceptions",
        '{"transaction_id": "t", "dueAt" :\n {"seconds": 5}}',
        "due_at",
        TIMESTAMP_OBJECT,
    ),
    # A key spelled with an escape is the same key to the transcoder.
    (
        "POST",
        "/v1/exceptions",
        '{"transaction_id": "t", "occurred\\u005fat": {}}',
        "occurred_at",
        TIMESTAMP_OBJECT,
    ),
    (
        "POST",
        "/v1/exceptions/bulk/create",
        '{"exceptions": [{"transaction_id": "t", "occurred_at": {}}]}',
        "exceptions[0].occurred_at",
        TIMESTAMP_OBJECT,
    ),
    # ... and a null map value as "".
    (
        "POST",
        "/v1/exceptions",
        '{"transaction_id": "t", "metadata": {"k": null}}',
        "metadata",
        "invalid value null: a map value cannot be null",
    ),
]

# Bodies that look alike but are fine (or free-form): they reach the server as they are.
ACCEPTED = [
    ("POST", "/v1/exceptions", '{"transaction_id": "null [[ \\"occurred_at\\": {}", "occurred_at": null}'),
    (
        "POST",
        "/v1/exceptions",
        '{"transaction_id": "t", "occurred_at": "2020-01-01T00:00:00Z", "due_at": null}',
    ),
    # A sub-request's data is any JSON (google.protobuf.Value): nothing is looked into there.
    (
        "POST",
        "/v1/bulk",
        '{"requests": [{"url": "/v1/exceptions", "method": "GET", "data": {"a": [null, [1]]}}]}',
    ),
]
