"""gen/openapi.json: fresh, valid OpenAPI 3.1, one operation per route of the route table (and no
other), shaped the way Envoy transcodes, and served at GET /openapi.json without a token."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from server.codegen import openapi
from server.contract.methods import load_methods
from server.contract.routes import RouteTable

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT_PATH = ROOT / "gen" / "openapi.json"
DESCRIPTOR_SET = ROOT / "gen" / "reconrouter.pb"


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(DOCUMENT_PATH.read_text())


def operations(document: dict):
    for path, item in document["paths"].items():
        for verb, operation in item.items():
            yield path, verb, operation


def schema(document: dict, ref: dict) -> dict:
    return document["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]


def test_the_committed_document_is_what_the_descriptor_set_gives_and_is_valid(document):
    rendered = openapi.render(openapi.build_document(DESCRIPTOR_SET.read_bytes()))
    assert rendered == DOCUMENT_PATH.read_text(), "gen/openapi.json is stale: run make gen"
    assert openapi.render(openapi.build_document(DESCRIPTOR_SET.read_bytes())) == rendered  # deterministic
    validate(document)  # raises on an invalid OpenAPI 3.1 document


def test_one_operation_per_route_of_the_route_table(document):
    table = RouteTable(load_methods())
    # OpenAPI path templates name variables only: {name=pattern} is {name}.
    expected = {
        (
            route.binding.verb.lower(),
            re.sub(r"\{([^}=]+)=[^}]*\}", r"{\1}", route.binding.path),
            route.method.full_name,
        )
        for route in table.routes
    }
    found = {(verb, path, op["x-grpc-method"]) for path, verb, op in operations(document)}
    assert found == expected
    assert len({op["operationId"] for _, _, op in operations(document)}) == len(found)
    assert "/openapi.json" in document["paths"]  # the route serving the document is in it


def test_parameters_follow_the_transcoder(document):
    listing = document["paths"]["/v1/exceptions"]["get"]
    query = {p["name"]: p for p in listing["parameters"] if p.get("in") == "query"}
    # Every field of ListExceptionsRequest, once, by its proto name; the json name is in the text.
    assert {"status", "severity", "sort_by", "date_from", "limit", "cursor"} <= set(query)
    assert not {"sortBy", "dateFrom"} & set(query)
    assert "`sortBy`" in query["sort_by"]["description"]
    # Input enums: the names and the numbers (the transcoder reads both).
    assert query["status"]["schema"]["enum"] == [
        "EXCEPTION_STATUS_UNSPECIFIED",
        "OPEN",
        "ASSIGNED",
        "PENDING_RESOLUTION",
        "RESOLVED",
        *range(5),
    ]
    # What the server enforces (server/codegen/openapi_constraints.py; test_openapi_constraints.py).
    assert query["limit"]["schema"] == {"type": "integer", "format": "int32", "minimum": 0, "maximum": 200}
    get = document["paths"]["/v1/exceptions/{exception_id}"]["get"]
    [path_param] = [p for p in get["parameters"] if p.get("in") == "path"]
    assert path_param["name"] == "exception_id" and path_param["required"] is True
    assert not [p for p in get["parameters"] if p.get("in") == "query"]  # the only field is bound
    # body "*": no query parameters, the path-bound field is not in the body.
    dispatch = document["paths"]["/v1/exceptions/{exception_id}/dispatch"]["post"]
    assert not [p for p in dispatch["parameters"] if p.get("in") == "query"]
    body = dispatch["requestBody"]["content"]["application/json"]["schema"]
    assert "exception_id" not in body["properties"] and "target_system" in body["properties"]
    assert "`targetSystem`" in body["properties"]["target_system"]["description"]


def test_schemas_use_proto_names_with_the_other_spelling_named_and_enum_names(document):
    create = document["paths"]["/v1/exceptions"]["post"]
    request = schema(document, create["requestBody"]["content"]["application/json"]["schema"])
    # One spelling per field in request bodies too (docs/decisions.md); the other is in the text.
    assert {"transaction_id", "occurred_at"} <= set(request["properties"])
    assert not {"transactionId", "occurredAt"} & set(request["properties"])
    assert "`occurredAt`" in request["properties"]["occurred_at"]["description"]
    # JSON null leaves a field unset: allowed where the field may be left out, not where required.
    assert "null" in request["properties"]["reason"]["type"]
    assert "null" not in request["properties"]["transaction_id"]["type"]
    response = schema(document, create["responses"]["200"]["content"]["application/json"]["schema"])
    assert "transactionId" not in response["properties"]
    assert response["properties"]["severity"]["enum"] == [
        "SEVERITY_UNSPECIFIED",
        "LOW",
        "MEDIUM",
        "HIGH",
        "CRITICAL",
    ]
    assert response["properties"]["created_at"]["format"] == "date-time"
    # Always printed (no presence) is required; proto3 optional and messages are not.
    assert {"id", "transaction_id", "metadata", "status"} <= set(response["required"])
    assert not {"amount", "assigned_to", "created_at"} & set(response["required"])
    status = document["components"]["schemas"]["google.rpc.Status"]
    assert set(status["properties"]) == {"code", "message", "details"}
    # Every detail the service or Envoy puts in `details` has its schema, with its "@type".
    details = status["properties"]["details"]["items"]["anyOf"]
    names = [ref["$ref"].rsplit(".", 1)[-1] for ref in details]
    assert names == ["ErrorInfo", "BadRequest", "RetryInfo", "RequestInfo"]
    for ref in details:
        detail = schema(document, ref)
        assert detail["required"][0] == "@type"
        assert detail["properties"]["@type"]["const"].endswith(ref["$ref"].rsplit("/", 1)[-1])
    # Requests do not forbid unknown fields (the transcoder ignores them); responses do.
    assert "additionalProperties" not in request
    assert response["additionalProperties"] is False


def test_security_idempotency_and_request_id_on_every_operation(document):
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        **document["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
    }
    methods = load_methods()
    for path, verb, op in operations(document):
        info = methods[op["x-grpc-method"]]
        names = {p.get("name") or p["$ref"].rsplit("/", 1)[-1] for p in op["parameters"]}
        assert "X-Request-Id" in names, path
        assert "X-Request-Id" in op["responses"]["200"]["headers"]
        if info.public:
            assert op["security"] == [] and "401" not in op["responses"], path
        elif info.signed_hook:  # no token: the system's signature over the body (401 without it)
            assert op["security"] == [] and "401" in op["responses"], path
        else:
            # No scopes on an http bearer scheme; the scope is x-required-scope.
            assert op["security"] == [{"bearerAuth": []}]
            assert op.get("x-required-scope", "") == info.required_scope
            assert "401" in op["responses"]
        if verb != "get" and not info.public:
            assert {"X-Idempotency-Key", "Idempotency-Key"} <= names, path
            assert "X-Idempotency-Replayed" in op["responses"]["200"]["headers"]
            assert {"409", "422"} <= set(op["responses"])
        else:
            assert "X-Idempotency-Key" not in names, path
        if info.rate_limit:
            assert "Retry-After" in json.dumps(op["responses"]["429"]) or op["responses"]["429"]["$ref"]
    callback = document["paths"]["/v1/exceptions/{exception_id}/callback"]["post"]
    [key] = [p for p in callback["parameters"] if p.get("name") == "X-Idempotency-Key"]
    # Either header does: neither is required by itself; the rule is in the text and the extension.
    assert key["required"] is False and "Idempotency-Key" in key["description"]
    assert callback["x-idempotency-key-required"] is True


def test_get_openapi_json_serves_the_generated_bytes_without_a_token(hard_stack):
    response = httpx.get(f"{hard_stack.base_url}/openapi.json", headers={"Authorization": "Bearer junk"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    assert response.content == DOCUMENT_PATH.read_bytes()
    bare = httpx.get(f"{hard_stack.base_url}/openapi.json")
    assert bare.status_code == 200 and bare.content == response.content
