"""What the server enforces on input, as JSON Schema keywords for the OpenAPI document.

The protos carry no validation options (yet): the rules live in the domain and the services, and
the numbers here are read from the modules that enforce them, so a changed limit changes the
document. tests/hardening/test_openapi_constraints.py sends, for every keyword stated here, a value
just inside (accepted) and just outside (400 naming the field) through the real stack; a rule
added to the server but not here is what schemathesis' positive generation finds.

Only input is constrained: request bodies (the `<Message>Input` schemas), query and path
parameters. Keys are (message full name, field name).
"""

from __future__ import annotations

from typing import Any

from server.domain import routing, sla
from server.domain.bulk import MAX_BULK_IDS
from server.domain.dispatch import MAX_NAME, TargetSystem
from server.domain.exceptions import LIMITS, Severity, Status
from server.domain.paging import MAX_LIMIT, SORT_FIELDS
from server.services.exceptions import MAX_BATCH_CREATE

Schema = dict[str, Any]

# uuid.UUID accepts more spellings (no hyphens, braces, urn:uuid:); the document names the usual one.
UUID: Schema = {"format": "uuid"}
# Every input string: the request guard refuses NUL characters anywhere (docs/hardening.md).
NO_NUL = r"^[^\u0000]*$"
# Python's str.strip() empties whitespace-only text, which counts as missing: at least one other
# character (and no NUL).
NOT_BLANK = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
# server/domain/exceptions.py: _AMOUNT and _CURRENCY (anchored there with re.match).
AMOUNT_PATTERN = r"^\d{1,18}(\.\d{1,4})?$"
CURRENCY_PATTERN = "^[A-Z]{3}$"

_EXCEPTIONS = "reconrouter.exceptions.v1."
_DELIVERIES = "reconrouter.deliveries.v1."
_TARGETS = "reconrouter.targets.v1."
_BULK = "reconrouter.bulk.v1."
_ROUTING = "reconrouter.routing.v1."
_PAGE_LIMIT: Schema = {"minimum": 0, "maximum": MAX_LIMIT}
_IDS: Schema = {"minItems": 1, "maxItems": MAX_BULK_IDS, "items": UUID}
TARGET_SYSTEMS = [t.value for t in TargetSystem]
# An enum field the service reads by value: the names it takes and their numbers (the transcoder
# reads either); the proto's zero value (`*_UNSPECIFIED`) is refused.
SEVERITIES: Schema = {"enum": [s.name for s in Severity] + [s.value for s in Severity]}
_CALLBACK_STATUSES = (Status.ASSIGNED, Status.RESOLVED)
# A routing rule (domain.routing.build_rule) and an SLA policy (domain.sla.build_policy).
_RULE_LIMITS = routing.LIMITS
_RULE_BODY: dict[str, Schema] = {
    "name": {"maxLength": _RULE_LIMITS["name"], "pattern": NOT_BLANK},
    "priority": {"minimum": 0, "maximum": _RULE_LIMITS["priority"]},
}

FIELDS: dict[tuple[str, str], Schema] = {
    # CreateException, and each item of BatchCreateExceptions (validate_new_exception).
    (_EXCEPTIONS + "CreateExceptionRequest", "transaction_id"): {
        "maxLength": LIMITS["transaction_id"],
        "pattern": NOT_BLANK,
    },
    (_EXCEPTIONS + "CreateExceptionRequest", "reason"): {"maxLength": LIMITS["reason"]},
    (_EXCEPTIONS + "CreateExceptionRequest", "source"): {"maxLength": LIMITS["source"]},
    (_EXCEPTIONS + "CreateExceptionRequest", "amount"): {"pattern": AMOUNT_PATTERN},
    (_EXCEPTIONS + "CreateExceptionRequest", "currency"): {"pattern": CURRENCY_PATTERN},
    (_EXCEPTIONS + "CreateExceptionRequest", "metadata"): {
        "maxProperties": LIMITS["metadata_entries"],
        "propertyNames": {"minLength": 1, "maxLength": LIMITS["metadata_key"], "pattern": NO_NUL},
        "additionalProperties": {"maxLength": LIMITS["metadata_value"]},
    },
    (_EXCEPTIONS + "BatchCreateExceptionsRequest", "exceptions"): {
        "minItems": 1,
        "maxItems": MAX_BATCH_CREATE,
    },
    # Listing (paging.parse_limit, parse_sort; the filters' lengths in services/exceptions.py).
    (_EXCEPTIONS + "ListExceptionsRequest", "limit"): _PAGE_LIMIT,
    (_EXCEPTIONS + "ListExceptionsRequest", "sort_by"): {"enum": list(SORT_FIELDS)},
    (_EXCEPTIONS + "ListExceptionsRequest", "sort_order"): {"enum": ["asc", "desc"]},
    (_EXCEPTIONS + "ListExceptionsRequest", "assigned_to"): {"maxLength": 255},
    (_EXCEPTIONS + "ListExceptionsRequest", "external_system"): {"maxLength": 255},
    (_EXCEPTIONS + "ListExceptionsRequest", "date_from"): {"format": "date-time"},
    (_EXCEPTIONS + "ListExceptionsRequest", "date_to"): {"format": "date-time"},
    (_EXCEPTIONS + "ListExceptionHistoryRequest", "limit"): _PAGE_LIMIT,
    (_DELIVERIES + "ListDeliveriesRequest", "limit"): _PAGE_LIMIT,
    (_DELIVERIES + "ListDeliveriesRequest", "target_system"): {"enum": TARGET_SYSTEMS},
    # Bulk changes (services/exceptions.py: bulk_assign, bulk_resolve).
    (_EXCEPTIONS + "BulkAssignExceptionsRequest", "assignee"): {
        "maxLength": LIMITS["assignee"],
        "pattern": NOT_BLANK,
    },
    (_EXCEPTIONS + "BulkResolveExceptionsRequest", "resolution"): {
        "maxLength": LIMITS["resolution"],
        "pattern": NOT_BLANK,
    },
    (_EXCEPTIONS + "BulkResolveExceptionsRequest", "reason"): {"maxLength": LIMITS["resolution_reason"]},
    # /v1/bulk: at least one sub-request (the most is the BULK_MAX_REQUESTS setting).
    (_BULK + "BatchRequest", "requests"): {"minItems": 1},
    # Ids (domain.exceptions.parse_uuid; bulk.unique_ids).
    (_EXCEPTIONS + "GetExceptionRequest", "exception_id"): UUID,
    (_EXCEPTIONS + "ListExceptionHistoryRequest", "exception_id"): UUID,
    (_EXCEPTIONS + "DispatchExceptionRequest", "exception_id"): UUID,
    (_EXCEPTIONS + "BulkDispatchExceptionsRequest", "exception_ids"): _IDS,
    (_EXCEPTIONS + "BulkAssignExceptionsRequest", "exception_ids"): _IDS,
    (_EXCEPTIONS + "BulkResolveExceptionsRequest", "exception_ids"): _IDS,
    (_DELIVERIES + "BulkRetryDeliveriesRequest", "delivery_ids"): _IDS,
    (_DELIVERIES + "GetDeliveryRequest", "delivery_id"): UUID,
    (_DELIVERIES + "RetryDeliveryRequest", "delivery_id"): UUID,
    (_DELIVERIES + "CancelDeliveryRequest", "delivery_id"): UUID,
    (_DELIVERIES + "ListExceptionDeliveriesRequest", "exception_id"): UUID,
    # Dispatch (domain.dispatch: a blank one is 400, one outside the list 422 UNSUPPORTED_TARGET_SYSTEM).
    (_EXCEPTIONS + "DispatchExceptionRequest", "target_system"): {"enum": TARGET_SYSTEMS},
    (_EXCEPTIONS + "DispatchExceptionRequest", "queue"): {"maxLength": MAX_NAME},
    (_EXCEPTIONS + "BulkDispatchExceptionsRequest", "target_system"): {"enum": TARGET_SYSTEMS},
    (_EXCEPTIONS + "BulkDispatchExceptionsRequest", "queue"): {"maxLength": MAX_NAME},
    # The callback a target system sends (services.exceptions: receive_callback).
    (_EXCEPTIONS + "ReceiveCallbackRequest", "exception_id"): UUID,
    (_EXCEPTIONS + "ReceiveCallbackRequest", "status"): {
        "enum": [s.name for s in _CALLBACK_STATUSES] + [s.value for s in _CALLBACK_STATUSES]
    },
    (_EXCEPTIONS + "ReceiveCallbackRequest", "external_system"): {"pattern": NOT_BLANK},
    (_EXCEPTIONS + "ReceiveCallbackRequest", "external_issue_id"): {"pattern": NOT_BLANK},
    (_EXCEPTIONS + "ReceiveCallbackRequest", "assignee"): {"maxLength": LIMITS["assignee"]},
    (_EXCEPTIONS + "ReceiveCallbackRequest", "resolution_notes"): {"maxLength": LIMITS["resolution_reason"]},
    # Routing rules.
    **{
        (_ROUTING + m, f): c
        for m in ("CreateRoutingRuleRequest", "UpdateRoutingRuleRequest")
        for f, c in _RULE_BODY.items()
    },
    (_ROUTING + "GetRoutingRuleRequest", "rule_id"): UUID,
    (_ROUTING + "UpdateRoutingRuleRequest", "rule_id"): UUID,
    (_ROUTING + "DeleteRoutingRuleRequest", "rule_id"): UUID,
    (_ROUTING + "EvaluateRoutingRulesRequest", "exception_id"): UUID,
    (_ROUTING + "RuleConditions", "severities"): {"items": SEVERITIES},
    (_ROUTING + "RuleConditions", "min_amount"): {"pattern": AMOUNT_PATTERN},
    (_ROUTING + "RuleConditions", "currency"): {"pattern": CURRENCY_PATTERN},
    (_ROUTING + "RuleConditions", "min_age_hours"): {"minimum": 0, "maximum": _RULE_LIMITS["min_age_hours"]},
    (_ROUTING + "RuleConditions", "sources"): {
        "maxItems": _RULE_LIMITS["sources"],
        "items": {"minLength": 1, "maxLength": _RULE_LIMITS["source"]},
    },
    (_ROUTING + "RuleConditions", "reason_contains"): {"maxLength": _RULE_LIMITS["reason_contains"]},
    (_ROUTING + "RuleConditions", "metadata"): {
        "maxProperties": _RULE_LIMITS["metadata_entries"],
        "propertyNames": {"minLength": 1, "maxLength": _RULE_LIMITS["metadata_key"], "pattern": NO_NUL},
        "additionalProperties": {"maxLength": _RULE_LIMITS["metadata_value"]},
    },
    (_ROUTING + "RuleAction", "target_system"): {"enum": TARGET_SYSTEMS},
    (_ROUTING + "RuleAction", "queue"): {"maxLength": _RULE_LIMITS["queue"]},
    (_ROUTING + "RuleAction", "assignee"): {"maxLength": _RULE_LIMITS["assignee"]},
    (_ROUTING + "RuleAction", "severity"): SEVERITIES,
    (_ROUTING + "RuleAction", "severity_reason"): {"maxLength": _RULE_LIMITS["severity_reason"]},
    # SLA policy.
    (_ROUTING + "SlaTier", "severity"): SEVERITIES,
    (_ROUTING + "SlaTier", "due_in_hours"): {"minimum": 1, "maximum": sla.MAX_DUE_IN_HOURS},
    (_ROUTING + "SlaEscalation", "target_system"): {"enum": TARGET_SYSTEMS},
    (_ROUTING + "SlaEscalation", "queue"): {"maxLength": 255},
    # The target system in a /v1/targets path (outside the list: 422 UNSUPPORTED_TARGET_SYSTEM).
    **{
        (_TARGETS + message, "target_system"): {"enum": TARGET_SYSTEMS}
        for message in (
            "PutTargetRequest",
            "GetTargetRequest",
            "DeleteTargetRequest",
            "PauseTargetRequest",
            "ResumeTargetRequest",
            "RotateTargetSecretRequest",
        )
    },
}

# Fields a request must carry (by either spelling), per input message.
REQUIRED: dict[str, tuple[str, ...]] = {
    _EXCEPTIONS + "CreateExceptionRequest": ("transaction_id",),
    _EXCEPTIONS + "BatchCreateExceptionsRequest": ("exceptions",),
    # No target_system: the tenant's routing rules choose (API.md §8).
    _EXCEPTIONS + "BulkDispatchExceptionsRequest": ("exception_ids",),
    _EXCEPTIONS + "BulkAssignExceptionsRequest": ("exception_ids", "assignee"),
    _EXCEPTIONS + "BulkResolveExceptionsRequest": ("exception_ids", "resolution"),
    _BULK + "BatchRequest": ("requests",),
    _DELIVERIES + "BulkRetryDeliveriesRequest": ("delivery_ids",),
    _EXCEPTIONS + "ReceiveCallbackRequest": ("status", "external_system", "external_issue_id"),
    _ROUTING + "CreateRoutingRuleRequest": ("name", "priority", "conditions", "action"),
    _ROUTING + "UpdateRoutingRuleRequest": ("name", "priority", "conditions", "action"),
    _ROUTING + "EvaluateRoutingRulesRequest": ("exception_id",),
    _ROUTING + "RuleAction": ("target_system",),
    _ROUTING + "SlaTier": ("severity", "due_in_hours"),
    _ROUTING + "SlaEscalation": ("target_system",),
}


def _given(name: str, **value: Any) -> Schema:
    """The field is there and not null (JSON null leaves a field unset), with `value`'s keywords."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}, **value}}}


def _implies(first: Schema, second: Schema) -> Schema:
    return {"anyOf": [{"not": first}, second]}


_TEXT = {"type": "string", "pattern": NOT_BLANK}  # some character other than white space

# Rules between fields of one message, beyond `required`.
MESSAGE_RULES: dict[str, list[Schema]] = {
    # validate_new_exception: an amount needs its currency.
    _EXCEPTIONS + "CreateExceptionRequest": [_implies(_given("amount"), _given("currency"))],
    # services.dispatch: a queue only with a target system (without one, the routing rule sets it).
    **{
        _EXCEPTIONS + message: [_implies(_given("queue", **_TEXT), _given("target_system"))]
        for message in ("DispatchExceptionRequest", "BulkDispatchExceptionsRequest")
    },
    # domain.routing._conditions: at least one condition (an empty list or text does not count);
    # min_amount and currency come together.
    _ROUTING + "RuleConditions": [
        {
            "anyOf": [
                _given("severities", minItems=1),
                _given("min_amount"),
                _given("currency"),
                _given("min_age_hours"),
                _given("sources", minItems=1),
                _given("reason_contains", minLength=1),
                _given("metadata", minProperties=1),
            ]
        },
        _implies(_given("min_amount"), _given("currency")),
        _implies(_given("currency"), _given("min_amount")),
    ],
    # domain.routing._action: a severity comes with its reason, a reason only with a severity.
    _ROUTING + "RuleAction": [
        _implies(_given("severity"), _given("severity_reason", **_TEXT)),
        _implies(_given("severity_reason", minLength=1), _given("severity")),
    ],
}


def constrained(schema: Schema, message: str, field: str) -> Schema:
    """The field's schema with the constraints the server enforces on it (items and map values
    merged into the element schema)."""
    extra = FIELDS.get((message, field))
    if not extra:
        return schema
    merged = dict(schema)
    for key, value in extra.items():
        if key in ("items", "additionalProperties") and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def message_constraints(message: str) -> Schema:
    """`required` (by proto name: request bodies are documented in that spelling) and the rules
    between fields."""
    schema: Schema = {}
    if REQUIRED.get(message):
        schema["required"] = list(REQUIRED[message])
    if message in MESSAGE_RULES:
        schema["allOf"] = list(MESSAGE_RULES[message])
    return schema
