"""The generated pieces of the Envoy config: the /docs routes (with and without Swagger UI's files)
and the route table the Lua filter answers 405 from."""

import json

from server.contract.methods import load_methods
from server.contract.routes import RouteTable
from server.process.envoy import DOCS_PAGES, docs_routes, lua_body_rules, lua_route_table


def _routes(text: str) -> list[dict]:
    return [json.loads(line.strip()[2:]) for line in text.splitlines()]


def test_docs_without_the_assets_is_a_page_saying_how_to_install_them(tmp_path):
    text, largest = docs_routes(assets=tmp_path)
    routes = _routes(text)
    served = {
        r["match"]["path"]: r["direct_response"]["body"]["filename"] for r in routes if "direct_response" in r
    }
    assert served == {"/docs": str((DOCS_PAGES / "missing.html").resolve())}
    assert "make docs-assets" in (DOCS_PAGES / "missing.html").read_text()
    assert largest == (DOCS_PAGES / "missing.html").stat().st_size


def test_docs_with_the_assets_serves_them_with_the_transcoder_off(tmp_path):
    (tmp_path / "swagger-ui-bundle.js").write_text("bundle" * 1000)
    (tmp_path / "swagger-ui.css").write_text("css")
    text, largest = docs_routes(assets=tmp_path)
    routes = _routes(text)
    paths = {r["match"]["path"] for r in routes}
    assert paths == {"/docs", "/docs/", "/docs/init.js", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"}
    for route in routes:
        config = route["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"]
        assert config["disabled"] is True
    assert largest == 6000


def test_the_lua_route_table_is_every_binding_of_the_contract():
    table = RouteTable(load_methods())
    rows = lua_route_table().splitlines()
    assert len(rows) == len(table.routes)
    for route in table.routes:
        segments = ", ".join(json.dumps(s) for s in route.segments)
        row = f"{{{json.dumps(route.binding.verb)}, {{{segments}}}, {json.dumps(route.verb)}, "
        assert any(line.strip().startswith(row) for line in rows), row


def test_the_body_rules_name_each_routes_body_type_that_has_something_to_check():
    rows = {
        line.split("}, ")[0].strip() + "}": line.strip().rsplit(", ", 1)[1]
        for line in lua_route_table().splitlines()
    }
    assert rows['{"POST", {"v1", "exceptions"}'] == '"reconrouter.exceptions.v1.CreateExceptionRequest"},'
    assert rows['{"GET", {"v1", "exceptions"}'] == '""},'
    # A hook's body is its raw bytes (google.api.HttpBody), not JSON the transcoder reads.
    assert rows['{"POST", {"v1", "hooks", "jira", "*"}'] == '""},'
    text, scalar_keys = lua_body_rules()
    assert scalar_keys == '"dueAt", "due_at", "occurredAt", "occurred_at"'
    create = next(line for line in text.splitlines() if 'CreateExceptionRequest"] =' in line)
    assert '["occurredAt"] = {"occurred_at", "scalar", "", "google.protobuf.Timestamp"}' in create
    assert '["metadata"] = {"metadata", "map", "", ""}' in create
