"""The batch envelope, validated whole before anything runs (API.md §4): a problem anywhere is a 400
for the whole call, naming every bad field (`requests[3].url`), and nothing has executed.

Checked here: the request count, each url against the route table (method included; /v1/bulk
itself is refused), `data` that is not JSON, `headers` of the wrong shape or not valid as gRPC
metadata, ids (format, uniqueness) and the syntax and targets of references. What only a run can
tell (a referenced result that failed, a body field of the wrong type) is a per-item result.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from reconrouter.bulk.v1 import bulk_pb2

from server.bulk import references as refs
from server.bulk.printer import integral_floats
from server.contract.routes import HTTP_METHODS, RouteMatch, RouteTable
from server.domain.errors import Violations

BULK_SERVICE = bulk_pb2.DESCRIPTOR.services_by_name["BulkService"].full_name
# gRPC metadata keys: lower-case letters, digits, '-', '_' and '.'; '-bin' keys carry bytes.
_METADATA_KEY = re.compile(r"[0-9a-z_.-]+")
# Headers a sub-request does not pass on: the caller is the outer call's (authorization), the id is
# derived from the outer one (x-request-id), and the rest describe the outer HTTP/gRPC transport.
IGNORED_HEADERS = frozenset(
    {
        "authorization",
        "x-request-id",
        "host",
        "content-type",
        "content-length",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
    }
)


@dataclass(frozen=True)
class PlannedRequest:
    index: int
    id: str
    method: str  # upper case
    path: str  # as written (references unsubstituted), leading '/'
    query: str
    match: RouteMatch  # resolved before any substitution (references sit in variable segments)
    headers: tuple[tuple[str, str], ...]  # metadata for the call
    has_body: bool
    body: Any  # parsed JSON
    references: tuple[refs.Reference, ...]


def plan_batch(request: bulk_pb2.BatchRequest, routes: RouteTable, max_requests: int) -> list[PlannedRequest]:
    v = Violations()
    count = len(request.requests)
    if count == 0:
        v.add("requests", "must contain at least 1 request")
    elif count > max_requests:
        v.add("requests", f"must contain at most {max_requests} requests")
    v.raise_if_any()
    ids = [item.id for item in request.requests]
    planned = [_plan_one(i, item, routes, ids, v) for i, item in enumerate(request.requests)]
    v.raise_if_any()
    return [p for p in planned if p is not None]


def _plan_one(
    index: int, item: bulk_pb2.SubRequest, routes: RouteTable, ids: list[str], v: Violations
) -> PlannedRequest | None:
    where = f"requests[{index}]"
    problems = _Problems()
    if item.id and not refs.ID_PATTERN.fullmatch(item.id):
        problems.add(f"{where}.id", "must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'")
    elif item.id and ids.index(item.id) != index:
        problems.add(f"{where}.id", f"repeats the id of requests[{ids.index(item.id)}]")
    method = (item.method or "GET").upper()
    if method not in HTTP_METHODS:
        problems.add(f"{where}.method", f"must be one of {', '.join(HTTP_METHODS)}")
    path, query = _split_url(item.url, f"{where}.url", problems)
    has_body, body = _body(item, f"{where}.data", problems)
    headers = _headers(item, f"{where}.headers", problems)
    found = _references(item.url, body, where, ids, problems)
    match = None
    if path is not None and method in HTTP_METHODS:
        match = routes.resolve(method, path)
        if match is None:
            allowed = routes.methods_for(path)
            hint = f" (it allows {', '.join(allowed)})" if allowed else ""
            problems.add(f"{where}.url", f"no route for {method} {path}{hint}")
        elif match.route.method.service == BULK_SERVICE:
            problems.add(f"{where}.url", "/v1/bulk cannot be nested in a /v1/bulk request")
        elif match.route.method.signed_hook:
            problems.add(f"{where}.url", "hooks are posted by the systems that sign them, not in /v1/bulk")
    if problems.items or match is None or path is None:
        for field, description in problems.items:
            v.add(field, description)
        return None
    return PlannedRequest(index, item.id, method, path, query, match, headers, has_body, body, found)


class _Problems:
    """One sub-request's violations, kept apart to know whether this one is plannable."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, description: str) -> None:
        self.items.append((field, description))


def _references(url: str, body: Any, where: str, ids: list[str], v: _Problems) -> tuple[refs.Reference, ...]:
    found: list[refs.Reference] = []
    try:
        found.extend(refs.in_text(url))
    except refs.ReferenceSyntaxError as exc:
        v.add(f"{where}.url", str(exc))
    try:
        found.extend(refs.in_json(body))
    except refs.ReferenceSyntaxError as exc:
        v.add(f"{where}.data", str(exc))
    for reference in found:
        if reference.target not in ids:
            v.add(where, f"{reference.text} refers to no request of this batch (no request has that id)")
    return tuple(found)


def _split_url(url: str, field: str, v: _Problems) -> tuple[str | None, str]:
    if not url:
        v.add(field, "is required")
        return None, ""
    if "://" in url.split("?")[0] or url.startswith("//"):
        v.add(field, "must be a path of this API such as /v1/exceptions, not an absolute URL")
        return None, ""
    url = url.split("#", 1)[0]
    path, _, query = url.partition("?")
    return (path if path.startswith("/") else "/" + path), query


def _body(item: bulk_pb2.SubRequest, field: str, v: _Problems) -> tuple[bool, Any]:
    if not item.HasField("data"):
        return False, None
    # `data` is a google.protobuf.Value: MessageToDict gives the plain JSON value (any type), not
    # the dict its stub promises.
    value: object = json_format.MessageToDict(item.data)
    if isinstance(value, str):
        # Seed 001: `data` is the body as a JSON-encoded string.
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            v.add(field, f"is not valid JSON ({exc.msg} at position {exc.pos})")
            return False, None
        except ValueError:
            # Valid JSON the decoder still refuses: an integer longer than Python's limit on
            # integer string conversion (sys.get_int_max_str_digits, 4300 by default).
            v.add(field, f"holds an integer of more than {sys.get_int_max_str_digits()} digits")
            return False, None
        except RecursionError:
            v.add(field, "is nested too deeply to parse")
            return False, None
    # Numbers of a JSON object arrive as doubles (google.protobuf.Value); 5.0 means 5.
    value = integral_floats(value)
    return value is not None, value


def _headers(item: bulk_pb2.SubRequest, field: str, v: _Problems) -> tuple[tuple[str, str], ...]:
    if not item.HasField("headers"):
        return ()
    # A google.protobuf.Value too (see _body): an object, an array or any other JSON value.
    raw: object = json_format.MessageToDict(item.headers)
    pairs: list[tuple[Any, Any]] = []
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list) and all(isinstance(h, dict) and set(h) == {"name", "value"} for h in raw):
        pairs = [(h["name"], h["value"]) for h in raw]
    elif raw is not None:
        v.add(field, 'must be an object of name -> value or an array of {"name", "value"}')
        return ()
    metadata = []
    for name, value in pairs:
        if not isinstance(name, str) or isinstance(value, dict | list) or value is None:
            v.add(field, "header names are strings and values are strings, numbers or booleans")
            continue
        key = name.strip().lower()
        text = json.dumps(value) if isinstance(value, bool) else str(integral_floats(value))
        if not _METADATA_KEY.fullmatch(key) or key.endswith("-bin") or key.startswith("grpc-"):
            v.add(field, f"{name!r} cannot be sent as a header here")
        elif not text.isascii() or not text.isprintable():
            v.add(field, f"the value of {name!r} must be printable ASCII")
        elif key not in IGNORED_HEADERS:
            metadata.append((key, text))
    return tuple(metadata)
