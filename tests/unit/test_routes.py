"""The /v1/bulk route table (server/contract/routes.py) against every annotated RPC of the contract, and
the template and precedence rules it shares with Envoy's path matcher."""

import pytest
from google.protobuf.descriptor import FieldDescriptor

from server.bulk.transcode import build_request
from server.contract.methods import HttpBinding, MethodInfo, load_methods
from server.contract.routes import RouteTable, TemplateError, normalize_path, parse_template, unescape

METHODS = load_methods()
TABLE = RouteTable(METHODS)
ANNOTATED = [info for info in METHODS.values() if info.http is not None]


def test_every_annotated_rpc_has_exactly_its_routes():
    routed = sorted((r.method.full_name, r.binding.verb, r.binding.path) for r in TABLE.routes)
    expected = sorted(
        (info.full_name, b.verb, b.path) for info in ANNOTATED for b in (info.http, *info.additional_http)
    )
    assert routed == expected
    assert len(ANNOTATED) >= 15  # the whole contract, not an empty table that passes everything


def _sample(field: FieldDescriptor, tag: str) -> tuple[str, object]:
    """A query/path text for the field and the value it must become in the message."""
    if field.type == FieldDescriptor.TYPE_ENUM:
        value = field.enum_type.values[-1]
        return value.name, value.number
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "true", True
    if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32):
        return "7", 7
    if field.type == FieldDescriptor.TYPE_STRING:
        return f"{tag}-{field.name}", f"{tag}-{field.name}"
    return "", None


@pytest.mark.parametrize("route", TABLE.routes, ids=lambda r: f"{r.binding.verb} {r.binding.path}")
def test_each_route_resolves_to_its_rpc_with_path_variables_and_query_parameters_in_their_fields(route):
    request_type = route.method.request_type
    path = route.binding.path
    expected: dict[str, object] = {}
    for variable in route.variables:
        name = variable.field_path[-1]
        path = path.replace("{" + ".".join(variable.field_path) + "}", f"p-{name}")
        expected[name] = f"p-{name}"
    # Every other scalar field as a query parameter, alternating snake_case and lowerCamelCase.
    query = []
    for position, field in enumerate(request_type.DESCRIPTOR.fields):
        text, value = _sample(field, "q")
        if field.name in expected or value is None or field.message_type is not None:
            continue
        name = field.json_name if position % 2 else field.name
        query.append(f"{name}={text}")
        expected[field.name] = [value] if _repeated(field) else value
    match = TABLE.resolve(route.binding.verb, path)
    assert match is not None and match.route.method.full_name == route.method.full_name
    message = build_request(match, "&".join(query), None, has_body=False)
    for name, value in expected.items():
        got = getattr(message, name)
        assert (list(got) if _repeated(request_type.DESCRIPTOR.fields_by_name[name]) else got) == value, name


def _repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


@pytest.mark.parametrize(
    ("verb", "path", "rpc", "bindings"),
    [
        # Literal segments beat variables: not DispatchException(exception_id="bulk").
        ("POST", "/v1/exceptions/bulk/dispatch", "BulkDispatchExceptions", {}),
        ("POST", "/v1/exceptions/bulk/assign", "BulkAssignExceptions", {}),
        ("POST", "/v1/exceptions/bulk/create", "BatchCreateExceptions", {}),
        # No GET under the literal branch: back to the variable one, like Envoy.
        ("GET", "/v1/exceptions/bulk", "GetException", {"exception_id": "bulk"}),
        ("POST", "/v1/exceptions/abc/dispatch", "DispatchException", {"exception_id": "abc"}),
        ("GET", "/v1/exceptions/abc/history", "ListExceptionHistory", {"exception_id": "abc"}),
        # Envoy's normalize_path and merge_slashes, and the ignored trailing slash.
        ("GET", "//v1//exceptions/./abc/", "GetException", {"exception_id": "abc"}),
        ("GET", "/v1/x/../exceptions", "ListExceptions", {}),
        # A single-segment variable decodes everything, '%2F' included; '+' stays '+'.
        ("GET", "/v1/exceptions/a%2Fb%20c+d", "GetException", {"exception_id": "a/b c+d"}),
        ("get", "/v1/exceptions", "ListExceptions", {}),
    ],
)
def test_resolution_follows_envoys_choices(verb, path, rpc, bindings):
    match = TABLE.resolve(verb, path)
    assert match is not None and match.route.method.name == rpc
    assert {".".join(k): v for k, v in match.bindings} == bindings


@pytest.mark.parametrize(
    ("verb", "path"),
    [
        ("DELETE", "/v1/exceptions"),
        ("PUT", "/v1/exceptions/abc"),
        ("GET", "/v1/exceptions/bulk/dispatch"),
        ("POST", "/v1/exceptions/abc/nothing"),
        ("GET", "/v2/exceptions"),
        ("GET", "/"),
    ],
)
def test_unknown_routes_resolve_to_nothing(verb, path):
    assert TABLE.resolve(verb, path) is None


def test_methods_for_names_the_methods_a_path_has():
    assert TABLE.methods_for("/v1/exceptions") == ["GET", "POST"]
    assert TABLE.methods_for("/v1/nothing") == []


RULE = "/v1/routing-rules/0b6f3e0e-8a53-4a8e-9d0b-6f1c2a3e4d5f"


def test_a_literal_template_takes_its_path_from_a_variable_one_for_every_method():
    """/v1/routing-rules/evaluate (POST) is also a value of /v1/routing-rules/{rule_id} (GET, PUT,
    DELETE): only the literal template counts there, so the others are no route (405, Allow: POST)."""
    assert TABLE.methods_for("/v1/routing-rules/evaluate") == ["POST"]
    assert TABLE.resolve("POST", "/v1/routing-rules/evaluate").route.method.name == "EvaluateRoutingRules"
    for verb in ("GET", "PUT", "DELETE", "PATCH"):
        assert TABLE.resolve(verb, "/v1/routing-rules/evaluate") is None, verb
    # Any other value is the variable's.
    assert TABLE.methods_for(RULE) == ["GET", "PUT", "DELETE"]
    for verb, rpc in (
        ("GET", "GetRoutingRule"),
        ("PUT", "UpdateRoutingRule"),
        ("DELETE", "DeleteRoutingRule"),
    ):
        match = TABLE.resolve(verb, RULE)
        assert match.route.method.name == rpc and match.bindings == ((("rule_id",), RULE.rsplit("/", 1)[1]),)
    assert TABLE.methods_for("/v1/routing-rules/evaluatex") == ["GET", "PUT", "DELETE"]
    assert TABLE.methods_for("/v1/exceptions/bulk/dispatch") == ["POST"]


def test_specificity_is_compared_segment_by_segment_literal_then_star_then_double_star():
    table = RouteTable(
        {
            "a": _info("AnyB", "GET", "/v1/{x}/b"),
            "b": _info("AUnder", "POST", "/v1/a/{y}"),
            "c": _info("Files", "GET", "/v1/files/{path=**}"),
            "d": _info("FileMeta", "DELETE", "/v1/files/*/meta"),
            "e": _info("FilesRoot", "PUT", "/v1/files"),
        }
    )
    # /v1/a/b: "a" is literal in /v1/a/{y} and a variable in /v1/{x}/b; the first difference decides.
    assert table.methods_for("/v1/a/b") == ["POST"]
    assert table.resolve("GET", "/v1/a/b") is None
    assert table.resolve("GET", "/v1/c/b").route.method.name == "AnyB"
    # '*' beats '**'; a '**' matching nothing is less specific than a template that ends there.
    assert table.methods_for("/v1/files/x/meta") == ["DELETE"]
    assert table.methods_for("/v1/files/x/other") == ["GET"]
    assert table.methods_for("/v1/files") == ["PUT"]
    assert table.resolve("GET", "/v1/files") is None


def _info(name: str, verb: str, path: str) -> MethodInfo:
    base = METHODS["/reconrouter.exceptions.v1.ExceptionsService/GetException"]
    return MethodInfo(
        full_name=f"/test.Service/{name}",
        service="test.Service",
        name=name,
        required_scope="x",
        rate_limit="",
        http=HttpBinding(verb, path, ""),
        request_type=base.request_type,
        response_type=base.response_type,
    )


def test_templates_with_patterns_wildcards_and_verbs():
    assert parse_template("/v1/{name=shelves/*}/books:get")[0] == ("v1", "shelves", "*", "books")
    assert parse_template("/v1/{name=shelves/*}/books:get")[2] == "get"
    segments, variables, _ = parse_template("/v1/files/{path=**}")
    assert segments == ("v1", "files", "**") and variables[0].end is None
    table = RouteTable(
        {
            "a": _info("Shelf", "GET", "/v1/{name=shelves/*}"),
            "b": _info("File", "GET", "/v1/files/{path=**}"),
            "c": _info("Undelete", "POST", "/v1/{name=shelves/*}:undelete"),
            "d": _info("Any", "GET", "/v1/*/any"),
        }
    )
    shelf = table.resolve("GET", "/v1/shelves/s1")
    assert shelf.route.method.name == "Shelf" and shelf.bindings == ((("name",), "shelves/s1"),)
    deep = table.resolve("GET", "/v1/files/a/b%2Fc/d")
    # A multi-segment variable keeps reserved characters encoded.
    assert deep.route.method.name == "File" and deep.bindings == ((("path",), "a/b%2Fc/d"),)
    assert table.resolve("GET", "/v1/files").route.method.name == "File"  # '**' matches nothing too
    undelete = table.resolve("POST", "/v1/shelves/s1:undelete")
    assert undelete.route.method.name == "Undelete" and undelete.bindings == ((("name",), "shelves/s1"),)
    assert table.resolve("GET", "/v1/whatever/any").route.method.name == "Any"
    assert table.resolve("GET", "/v1/shelves/s1:undelete") is None


@pytest.mark.parametrize("template", ["v1/x", "/v1/{a", "/v1/{a}}", "/v1/**/x", "/v1//x", "/v1/{1a}"])
def test_malformed_templates_fail_at_start_up(template):
    with pytest.raises(TemplateError):
        parse_template(template)


def test_a_route_bound_twice_fails_at_start_up():
    with pytest.raises(TemplateError, match="bound twice"):
        RouteTable({"a": _info("A", "GET", "/v1/{x}"), "b": _info("B", "GET", "/v1/{y}")})


def test_normalize_and_unescape():
    assert normalize_path("/a//b/./c/../d/") == ["a", "b", "d"]
    assert unescape("a%2Fb%zz+%C3%A9", keep_reserved=False) == "a/b%zz+é"
    assert unescape("a%2Fb%41", keep_reserved=True) == "a%2FbA"
