"""gen/openapi.json: the OpenAPI 3.1 description of the REST surface, written by `make gen` from the
descriptor set Envoy loads (gen/reconrouter.pb), so it cannot drift from the routes Envoy serves.

- Routes: every `google.api.http` binding (main and additional_bindings) of the reconrouter.*
  services; `custom` patterns are skipped, as Envoy's route table and server/contract/routes.py do.
- Parameters as the transcoder maps them: path variables; for routes whose body is not `*`, every
  other leaf field of the request message as a query parameter (dotted for nested messages, repeated
  fields as repeated parameters, by proto name and by lowerCamelCase json name).
- Schemas from the messages (server/codegen/openapi_schemas.py): proto field names for output, both
  spellings for input, enums as names. Errors are google.rpc.Status.
- Security: bearer tokens; the scope a route needs is the security requirement's role (OpenAPI 3.1)
  and `x-required-scope`. Mutating routes take X-Idempotency-Key / Idempotency-Key and answer
  X-Idempotency-Replayed; every route takes and answers X-Request-Id.

Deterministic: the same descriptor set gives the same bytes (CI's freshness check of gen/ covers it).
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor

from server.bulk.references import ID_PATTERN
from server.codegen.openapi_constraints import REQUIRED, constrained
from server.codegen.openapi_schemas import Comments, Schema, SchemaBuilder
from server.contract.json_rules import STRING_FORM_MESSAGES, containing_type, is_map, message_type
from server.contract.methods import HttpBinding, MethodInfo, load_descriptor_set, methods_of_descriptor_set
from server.contract.routes import HTTP_METHODS
from server.domain import idempotency

OPENAPI_VERSION = "3.1.0"
KEY_PATTERN = f"^{idempotency.KEY_PATTERN}$"
# The details the service and Envoy put in a google.rpc.Status (server/rpc/errors.py, envoy.yaml.tmpl).
ERROR_DETAILS = ("ErrorInfo", "BadRequest", "RetryInfo", "RequestInfo")
_VARIABLE = re.compile(r"\{([^}=]+)(=[^}]*)?\}")


# -- reading the descriptor set --------------------------------------------------------------------


def _comment(text: str) -> str:
    return textwrap.dedent(text).strip()


def _comments(files: descriptor_pb2.FileDescriptorSet) -> Comments:
    """Leading comments by full name: messages, fields, enums, services ("pkg.Svc"), methods."""
    found: Comments = {}
    for file in files.file:
        by_path = {
            tuple(loc.path): _comment(loc.leading_comments)
            for loc in file.source_code_info.location
            if loc.leading_comments.strip()
        }
        prefix = f"{file.package}." if file.package else ""
        _message_comments(file.message_type, (4,), prefix, by_path, found)
        _enum_comments(file.enum_type, (5,), prefix, by_path, found)
        for i, service in enumerate(file.service):
            if (6, i) in by_path:
                found[f"{prefix}{service.name}"] = by_path[(6, i)]
            for j, method in enumerate(service.method):
                if (6, i, 2, j) in by_path:
                    found[f"{prefix}{service.name}.{method.name}"] = by_path[(6, i, 2, j)]
    return found


def _message_comments(items, path: tuple, scope: str, by_path: dict, found: Comments) -> None:
    # Source paths: message_type = 4, its field = 2, nested_type = 3, enum_type = 4 (descriptor.proto).
    for i, message in enumerate(items):
        name, here = f"{scope}{message.name}", (*path, i)
        if here in by_path:
            found[name] = by_path[here]
        for j, field in enumerate(message.field):
            if (*here, 2, j) in by_path:
                found[f"{name}.{field.name}"] = by_path[(*here, 2, j)]
        _message_comments(message.nested_type, (*here, 3), f"{name}.", by_path, found)
        _enum_comments(message.enum_type, (*here, 4), f"{name}.", by_path, found)


def _enum_comments(items, path: tuple, scope: str, by_path: dict, found: Comments) -> None:
    for i, enum in enumerate(items):
        if (*path, i) in by_path:
            found[f"{scope}{enum.name}"] = by_path[(*path, i)]


# -- parameters ------------------------------------------------------------------------------------


def _resolve(message: Descriptor, dotted: str) -> FieldDescriptor:
    *parents, last = dotted.split(".")
    for name in parents:
        message = message_type(message.fields_by_name[name])
    return message.fields_by_name[last]


def _openapi_path(template: str) -> tuple[str, list[tuple[str, str]]]:
    """'/v1/{name=shelves/*}' -> ('/v1/{name}', [('name', 'shelves/*')])."""
    variables = [(m.group(1), (m.group(2) or "=*")[1:]) for m in _VARIABLE.finditer(template)]
    return _VARIABLE.sub(lambda m: "{" + m.group(1) + "}", template), variables


def _query_fields(
    message: Descriptor,
    bound: set[str],
    prefix: str = "",
    json_prefix: str = "",
    seen: frozenset[str] = frozenset(),
) -> list[tuple[str, str, FieldDescriptor]]:
    """(proto name path, json name path, field) for every field a query parameter can set: scalars,
    repeated scalars and string-like well-known types, through nested messages (not repeated ones,
    not maps, not recursively)."""
    found = []
    seen = seen | {message.full_name}
    for field in message.fields:
        name, json_name = f"{prefix}{field.name}", f"{json_prefix}{field.json_name}"
        if name in bound or is_map(field):
            continue
        if field.message_type is not None and field.message_type.full_name not in STRING_FORM_MESSAGES:
            if not field.is_repeated and field.message_type.full_name not in seen:
                found.extend(_query_fields(field.message_type, bound, f"{name}.", f"{json_name}.", seen))
            continue
        found.append((name, json_name, field))
    return found


def _parameter(builder: SchemaBuilder, name: str, where: str, field: FieldDescriptor, **extra) -> Schema:
    schema = constrained(builder.field(field, output=False), containing_type(field).full_name, field.name)
    if where == "query" and schema.get("format") == "date-time":
        # An empty query value leaves the field unset (the transcoder), so "" is accepted too.
        schema = {
            **{k: v for k, v in schema.items() if k != "format"},
            "anyOf": [{"format": "date-time"}, {"maxLength": 0}],
        }
    description = schema.pop("description", None)
    parameter: Schema = {"name": name, "in": where, "schema": schema, **extra}
    if description:
        parameter["description"] = description
    if field.is_repeated:
        parameter.update(style="form", explode=True)
    return parameter


# -- the document ----------------------------------------------------------------------------------


def _common_components() -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/google.rpc.Status"}
    request_id = {"$ref": "#/components/headers/X-Request-Id"}
    return {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token from `python -m server tokens create --tenant T --scopes ...`. "
                "Each token belongs to one tenant and carries scopes; the scope a route needs is in "
                "its description and its `x-required-scope`.",
            }
        },
        "parameters": {
            "X-Request-Id": {
                "name": "X-Request-Id",
                "in": "header",
                "required": False,
                "description": "Echoed on the response, in RequestInfo of every error and in every "
                "log line of the request. Any printable ASCII up to 1024 characters is kept; anything "
                "else (or none) is replaced by a generated UUID, never refused.",
                "schema": {"type": "string"},
            },
            "X-Idempotency-Key": {
                "name": "X-Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "A repeat of a completed request with the same key answers the stored "
                "response (X-Idempotency-Replayed: true) and runs nothing; docs/idempotency.md.",
                "schema": {"type": "string", "pattern": KEY_PATTERN},
            },
            "Idempotency-Key": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Read when X-Idempotency-Key is absent; refused (400) when "
                "malformed even then.",
                "schema": {"type": "string", "pattern": KEY_PATTERN},
            },
        },
        "headers": {
            "X-Request-Id": {"description": "The request's id.", "schema": {"type": "string"}},
            "X-Idempotency-Replayed": {
                "description": "`true` when this is a stored response replayed for a repeated key.",
                "schema": {"type": "string", "enum": ["true", "false"]},
            },
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}},
        },
        "responses": {
            "Error": {
                "description": "A google.rpc.Status: `details` holds a google.rpc.ErrorInfo whose "
                "`reason` is a stable code (domain `reconrouter`), plus google.rpc.BadRequest field "
                "violations, google.rpc.RetryInfo or google.rpc.RequestInfo where they apply.",
                "headers": {"X-Request-Id": request_id},
                "content": {"application/json": {"schema": error}},
            },
            "RateLimited": {
                "description": "RATE_LIMITED: over the per-tenant limit.",
                "headers": {
                    "X-Request-Id": request_id,
                    "Retry-After": {"$ref": "#/components/headers/Retry-After"},
                },
                "content": {"application/json": {"schema": error}},
            },
        },
    }


_ERROR_STATUSES = {
    "400": "Invalid request: validation, malformed JSON, unknown query parameter, bad idempotency key.",
    "401": "UNAUTHENTICATED: missing, unknown or revoked token.",
    "403": "PERMISSION_DENIED: the token lacks the scope.",
    "404": "NOT_FOUND: no such resource for this tenant (or no such route).",
    "409": "Conflict, e.g. IDEMPOTENCY_KEY_IN_USE.",
    "413": "PAYLOAD_TOO_LARGE: the body is over the limit (4 MiB by default).",
    "422": "A business rule refuses the request, e.g. IDEMPOTENCY_KEY_REUSED, INVALID_STATE.",
    "500": "INTERNAL: unexpected; quote the request id.",
    "503": "UNAVAILABLE: the server or its database is unreachable.",
    "504": "DEADLINE_EXCEEDED: the server did not answer in time.",
}


def _responses(
    rpc: MethodInfo, binding: HttpBinding, builder: SchemaBuilder, mutating: bool
) -> dict[str, Any]:
    output = _descriptor(rpc).output_type
    headers: dict[str, Any] = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    if mutating and not rpc.public:
        headers["X-Idempotency-Replayed"] = {"$ref": "#/components/headers/X-Idempotency-Replayed"}
    if output.full_name == "google.api.HttpBody":
        content = {"application/json": {"schema": {"description": "The body as the RPC returns it."}}}
    elif binding.response_body:
        field = output.fields_by_name[binding.response_body]
        content = {"application/json": {"schema": builder.field(field, output=True)}}
    else:
        content = {"application/json": {"schema": builder.ref(output, output=True)}}
    responses: dict[str, Any] = {"200": {"description": "OK", "headers": headers, "content": content}}
    wanted = {"400", "404", "500", "503", "504"}
    if not rpc.public:
        wanted.add("401")
    if rpc.required_scope:
        wanted.add("403")
    if binding.body:
        wanted.add("413")
    if mutating and not rpc.public:
        wanted |= {"409", "422"}
    for status in sorted(wanted):
        responses[status] = {"$ref": "#/components/responses/Error", "description": _ERROR_STATUSES[status]}
    if rpc.rate_limit:
        responses["429"] = {"$ref": "#/components/responses/RateLimited"}
    responses["default"] = {"$ref": "#/components/responses/Error"}
    return dict(sorted(responses.items(), key=lambda kv: (kv[0] == "default", kv[0])))


def _descriptor(rpc: MethodInfo) -> MethodDescriptor:
    assert rpc.descriptor is not None  # read_methods always sets it
    return rpc.descriptor


def _operation(
    rpc: MethodInfo, binding: HttpBinding, index: int, builder: SchemaBuilder, comments: Comments
) -> tuple[str, Schema]:
    method = _descriptor(rpc)
    request = method.input_type
    path, variables = _openapi_path(binding.path)
    mutating = binding.verb != "GET"
    parameters: list[Schema] = []
    bound = {name for name, _ in variables}
    for name, pattern in variables:
        extra: dict[str, Any] = {"required": True}
        if pattern != "*":
            extra["x-path-pattern"] = pattern
        parameters.append(_parameter(builder, name, "path", _resolve(request, name), **extra))
    if binding.body != "*":
        skip = bound | ({binding.body} if binding.body else set())
        # One spelling each (generated clients would otherwise offer both): the proto name. The
        # transcoder also reads the lowerCamelCase one, which the description names.
        for name, json_name, field in _query_fields(request, skip):
            parameter = _parameter(builder, name, "query", field)
            if json_name != name:
                also = f"Also accepted as `{json_name}`."
                parameter["description"] = f"{parameter.get('description', '')}\n\n{also}".strip()
            parameters.append(parameter)
    parameters.append({"$ref": "#/components/parameters/X-Request-Id"})
    if mutating and not rpc.public:
        key: Schema = {"$ref": "#/components/parameters/X-Idempotency-Key"}
        if rpc.idempotency_key_required:
            # One of the two headers is required; OpenAPI cannot say "one of", so neither is marked
            # required and the rule is stated (and x-idempotency-key-required set).
            key = {
                "name": "X-Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "This route needs a key: X-Idempotency-Key or Idempotency-Key (400 "
                "INVALID_IDEMPOTENCY_KEY without either).",
                "schema": {"type": "string", "pattern": KEY_PATTERN},
            }
        parameters += [key, {"$ref": "#/components/parameters/Idempotency-Key"}]
    description = comments.get(f"{rpc.service}.{method.name}", "")
    scope_text = (
        f"Needs a token with the `{rpc.required_scope}` scope."
        if rpc.required_scope
        else ("Needs a valid token." if rpc.token_required else "Needs no token.")
    )
    operation: Schema = {
        "operationId": f"{rpc.service.rsplit('.', 1)[-1]}_{method.name}" + (f"_{index}" if index else ""),
        "summary": _summary(description) or method.name,
        "description": f"{description}\n\n{scope_text}".strip(),
        "tags": [rpc.service],
        "parameters": parameters,
        "responses": _responses(rpc, binding, builder, mutating),
        # A signed hook takes no token: the system's signature over the body authenticates it. An
        # http bearer scheme takes no scopes in a requirement (OpenAPI; Spectral and Redocly warn):
        # the scope is x-required-scope and the description.
        "security": [] if rpc.public or rpc.signed_hook else [{"bearerAuth": []}],
        "x-grpc-method": f"/{rpc.service}/{method.name}",
    }
    if rpc.required_scope:
        operation["x-required-scope"] = rpc.required_scope
    if rpc.idempotency_key_required:
        operation["x-idempotency-key-required"] = True
    if rpc.signed_hook:
        operation["x-signed-hook"] = True
    if binding.body:
        schema = (
            builder.ref(request, output=False, skip=frozenset(bound))
            if binding.body == "*"
            else builder.field(request.fields_by_name[binding.body], output=False)
        )
        operation["requestBody"] = {
            # Required when the message has a required field (no body leaves it out).
            "required": binding.body == "*" and bool(REQUIRED.get(request.full_name)),
            "description": "JSON; unknown fields are ignored. Field names in snake_case or lowerCamelCase.",
            "content": {"application/json": {"schema": schema}},
        }
    return path, operation


def _summary(description: str) -> str:
    """The first sentence of the first paragraph, on one line."""
    first = description.split("\n\n")[0].replace("\n", " ")
    sentence = first.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= 120 else sentence[:117] + "..."


def build_document(descriptor_set: bytes) -> dict[str, Any]:
    files, pool = load_descriptor_set(descriptor_set)
    comments = _comments(files)
    builder = SchemaBuilder(comments)
    paths: dict[str, dict[str, Any]] = {}
    rpcs = [rpc for rpc in methods_of_descriptor_set(files, pool).values() if rpc.bindings]
    for rpc in rpcs:
        for index, binding in enumerate(rpc.bindings):
            path, operation = _operation(rpc, binding, index, builder, comments)
            verb = binding.verb.lower()
            if verb in paths.setdefault(path, {}):
                raise ValueError(f"{binding.verb} {path} is bound twice")
            paths[path][verb] = operation
    _constrain_sub_requests(builder, paths)
    # The error model: google.rpc.Status and the detail messages the service puts in it.
    # `details` is any of the four the service (and Envoy) puts there, each with its "@type".
    builder.ref(pool.FindMessageTypeByName("google.rpc.Status"), output=True)
    details = []
    for detail in ERROR_DETAILS:
        ref = builder.ref(pool.FindMessageTypeByName(f"google.rpc.{detail}"), output=True)
        target = builder.components[ref["$ref"].rsplit("/", 1)[-1]]
        target["properties"] = {
            "@type": {"type": "string", "const": f"type.googleapis.com/google.rpc.{detail}"},
            **target["properties"],
        }
        target["required"] = ["@type", *target.get("required", [])]
        details.append(ref)
    status_details = builder.components["google.rpc.Status"]["properties"]["details"]
    status_details["items"] = {"anyOf": details}
    components = _common_components()
    components["schemas"] = dict(sorted(builder.components.items()))
    services = sorted({rpc.service for rpc in rpcs})
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "reconrouter",
            "version": "v1",
            "description": "Reconciliation exceptions: store, list, assign, resolve and dispatch them. "
            "Generated by `make gen` from the proto contract (gen/reconrouter.pb, the descriptor set "
            "Envoy transcodes with). JSON in and out; output field names are the proto names, input "
            "accepts lowerCamelCase too; enums are their names; every error is a google.rpc.Status.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": s, "description": comments.get(s) or f"The REST bindings of the gRPC service `{s}`."}
            for s in services
        ],
        "paths": {path: paths[path] for path in sorted(paths)},
        "components": components,
    }


def _constrain_sub_requests(builder: SchemaBuilder, paths: dict[str, dict[str, Any]]) -> None:
    """A /v1/bulk sub-request names a route of this API (server/bulk/envelope.py): its url matches
    one of the paths (a leading '/' optional, a query allowed) for its method, never /v1/bulk itself
    nor a signed hook. A variable's value is one segment that is not a dot segment and holds no
    `@` (a reference `@{id.field}` must name a request of the batch, which no schema can check)."""
    name = "reconrouter.bulk.v1.SubRequestInput"
    if name not in builder.components:
        return
    by_method: dict[str, list[str]] = {}
    for path, item in paths.items():
        for verb, operation in item.items():
            if operation.get("x-grpc-method", "").startswith("/reconrouter.bulk.") or operation.get(
                "x-signed-hook"
            ):
                continue
            segments = "/".join(
                r"[^/?#@.\s][^/?#@\s]*" if part.startswith("{") else re.escape(part)
                for part in path.strip("/").split("/")
            )
            by_method.setdefault(verb.upper(), []).append(segments)
    choices = []
    for method in HTTP_METHODS:
        if method not in by_method:
            continue
        # GET is the default: also "" and null (JSON null leaves the field unset).
        names: list[Any] = [method, method.lower(), *(["", None] if method == "GET" else [])]
        url = rf"^/?({'|'.join(sorted(by_method[method]))})(\?[^#@\s]*)?$"
        method_schema: Schema = {"enum": names}
        choice: Schema = {"properties": {"method": method_schema, "url": {"pattern": url}}}
        if method != "GET":  # an absent method means GET
            choice["required"] = ["method"]
        choices.append(choice)
    schema = builder.components[name]
    schema["required"] = ["url"]
    schema["properties"]["url"] = {**schema["properties"]["url"], "type": "string"}
    schema["properties"]["id"] = {**schema["properties"]["id"], "pattern": f"^({ID_PATTERN.pattern})?$"}
    schema.setdefault("allOf", []).append({"anyOf": choices})


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=True) + "\n"


def write(descriptor_path: Path, out_path: Path) -> None:
    out_path.write_text(render(build_document(Path(descriptor_path).read_bytes())))


if __name__ == "__main__":
    write(Path(sys.argv[1]), Path(sys.argv[2]))
