"""The REST route table: every google.api.http binding of the contract, read from the generated
descriptors (server/contract/methods.py), the same annotations Envoy's transcoder loads. It is the only
place where a URL becomes an RPC in process (/v1/bulk); no URL is written down anywhere else.

It chooses the way Envoy's path matcher does (grpc-httpjson-transcoding), verified against Envoy
1.40 (envoy/README.md, tests/e2e/test_bulk_parity.py):
- Templates follow google.api.http: literal segments, `*`, `**` (last only), variables
  `{field.path}` or `{field=pattern/*}`, an optional `:verb` suffix.
- The most specific template wins, as a set: of the templates that match a path, only those that
  are most specific count (compared segment by segment: a literal beats `*`, which beats `**`), and
  a method none of them is bound to has no route there, even when a less specific template has it.
  POST /v1/exceptions/bulk/dispatch is BulkDispatchExceptions, not DispatchException("bulk"); GET
  /v1/routing-rules/evaluate is no route (405, `Allow: POST`), not GetRoutingRule("evaluate").
  Envoy's transcoder alone would take the latter (it backtracks per method); its Lua filter, in front
  of it, answers 405 by this same rule first (envoy/envoy.yaml.tmpl, allowed_methods).
- The path is normalised first like the connection manager does it (`normalize_path`,
  `merge_slashes`): `//` merges, `.` and `..` resolve, a trailing `/` is ignored.
- Variables are percent-decoded; a single-segment variable decodes everything (`%2F` is `/`), a
  multi-segment one keeps reserved characters encoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from server.contract.methods import HttpBinding, MethodInfo

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# RFC 6570 reserved characters: kept escaped in multi-segment variables, as Envoy does.
_RESERVED = frozenset(":/?#[]@!$&'()*+,;=")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
# A template segment's rank where it meets a path segment: the higher, the more specific.
_LITERAL, _SINGLE, _MULTI = 2, 1, 0


class TemplateError(ValueError):
    """An annotation this table cannot serve; raised at start-up, never per request."""


@dataclass(frozen=True)
class Variable:
    field_path: tuple[str, ...]
    start: int  # index of its first segment
    end: int | None  # one past its last segment; None: to the end of the path (`**`)

    @property
    def single_segment(self) -> bool:
        return self.end is not None and self.end - self.start == 1


@dataclass(frozen=True)
class Route:
    method: MethodInfo
    binding: HttpBinding
    segments: tuple[str, ...]  # each a literal, "*" or "**"
    variables: tuple[Variable, ...]
    verb: str  # the custom verb after ':', usually ""


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    # (field path, decoded value) for every path variable, in template order.
    bindings: tuple[tuple[tuple[str, ...], str], ...]


def parse_template(template: str) -> tuple[tuple[str, ...], tuple[Variable, ...], str]:
    """'/v1/{name=shelves/*}/books:get' -> (('v1', 'shelves', '*', 'books'), (Variable...), 'get')."""
    if not template.startswith("/"):
        raise TemplateError(f"{template!r}: a path template starts with '/'")
    body, verb = _split_verb(template[1:])
    segments: list[str] = []
    variables: list[Variable] = []
    for part in _top_level_parts(body, template):
        if part.startswith("{"):
            name, _, pattern = part[1:-1].partition("=")
            if not _IDENT.match(name):
                raise TemplateError(f"{template!r}: bad variable {part!r}")
            inner = pattern.split("/") if pattern else ["*"]
            start = len(segments)
            segments.extend(inner)
            end = None if "**" in inner else len(segments)
            variables.append(Variable(tuple(name.split(".")), start, end))
        else:
            segments.append(part)
    if "**" in segments[:-1]:
        raise TemplateError(f"{template!r}: '**' must be the last segment")
    if any(not s or "{" in s or "}" in s for s in segments):
        raise TemplateError(f"{template!r}: empty or malformed segment")
    return tuple(segments), tuple(variables), verb


def _split_verb(body: str) -> tuple[str, str]:
    last = body.rsplit("/", 1)[-1]
    if ":" in last and "}" not in last.split(":")[-1]:
        head, _, verb = body.rpartition(":")
        return head, verb
    return body, ""


def _top_level_parts(body: str, template: str) -> list[str]:
    """Splits on '/' outside braces: '{a=x/*}/b' -> ['{a=x/*}', 'b']."""
    parts, current, depth = [], "", 0
    for char in body:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if depth not in (0, 1):
            raise TemplateError(f"{template!r}: unbalanced braces")
        if char == "/" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise TemplateError(f"{template!r}: unbalanced braces")
    parts.append(current)
    return parts


def normalize_path(path: str) -> list[str]:
    """The segments Envoy routes on: slashes merged, dot segments resolved, trailing '/' dropped."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return segments


def unescape(text: str, *, keep_reserved: bool) -> str:
    """Percent-decoding as the transcoder does it ('+' stays '+'; malformed escapes stay as they are)."""

    def decode(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return match.group(0) if keep_reserved and char in _RESERVED else char

    decoded = _PERCENT.sub(decode, text)
    # Escapes of UTF-8 bytes: re-read the latin-1 characters as bytes.
    try:
        return decoded.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return decoded


@dataclass
class _Node:
    literals: dict[str, _Node] = field(default_factory=dict)
    single: _Node | None = None  # '*'
    multi: _Node | None = None  # '**'
    # (HTTP method, custom verb) -> route
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)

    def child(self, key: str) -> _Node:
        if key == "*":
            self.single = self.single or _Node()
            return self.single
        if key == "**":
            self.multi = self.multi or _Node()
            return self.multi
        return self.literals.setdefault(key, _Node())


class RouteTable:
    def __init__(self, methods: dict[str, MethodInfo]) -> None:
        self._root = _Node()
        self._verbs: set[str] = set()
        self.routes: list[Route] = []
        for info in methods.values():
            for binding in (info.http, *info.additional_http):
                if binding is not None:
                    self._add(Route(info, binding, *parse_template(binding.path)))

    def _add(self, route: Route) -> None:
        if route.binding.verb not in HTTP_METHODS:
            raise TemplateError(f"{route.method.full_name}: unsupported HTTP method {route.binding.verb}")
        node = self._root
        for segment in route.segments:
            node = node.child(segment)
        key = (route.binding.verb, route.verb)
        if key in node.routes:
            other = node.routes[key].method.full_name
            raise TemplateError(f"{route.binding.verb} {route.binding.path}: bound twice ({other})")
        node.routes[key] = route
        if route.verb:
            self._verbs.add(route.verb)
        self.routes.append(route)

    def resolve(self, http_method: str, path: str) -> RouteMatch | None:
        """The route for this method and path (no query string), or None."""
        segments, verb = self._split(path)
        route = self._most_specific(segments, verb).get(http_method.upper())
        if route is None:
            return None
        bindings = []
        for variable in route.variables:
            parts = segments[variable.start : variable.end]
            value = "/".join(unescape(p, keep_reserved=not variable.single_segment) for p in parts)
            bindings.append((variable.field_path, value))
        return RouteMatch(route, tuple(bindings))

    def methods_for(self, path: str) -> list[str]:
        """HTTP methods that have a route for this path (its `Allow`; empty: no template matches)."""
        segments, verb = self._split(path)
        found = self._most_specific(segments, verb)
        return [m for m in HTTP_METHODS if m in found]

    def _split(self, path: str) -> tuple[list[str], str]:
        segments = normalize_path(path)
        # Like Envoy, a ':suffix' is a custom verb only when some route declares that verb.
        if segments and ":" in segments[-1]:
            head, _, verb = segments[-1].rpartition(":")
            if verb in self._verbs:
                segments[-1] = head
                return segments, verb
        return segments, ""

    def _most_specific(self, segments: list[str], verb: str) -> dict[str, Route]:
        """HTTP method -> route, over the most specific templates that match these segments."""
        matches: list[tuple[tuple[int, ...], _Node]] = []
        self._collect(self._root, segments, 0, (), matches)
        best: tuple[int, ...] | None = None
        found: dict[str, Route] = {}
        for rank, node in matches:
            routes = {
                method: route for (method, route_verb), route in node.routes.items() if route_verb == verb
            }
            if not routes or (best is not None and rank < best):
                continue
            if best is None or rank > best:
                best, found = rank, {}
            found.update(routes)
        return found

    def _collect(
        self,
        node: _Node,
        segments: list[str],
        index: int,
        rank: tuple[int, ...],
        out: list[tuple[tuple[int, ...], _Node]],
    ) -> None:
        """Every node whose template matches, with its rank: per path segment 2 (literal), 1 ('*') or
        0 ('**'), then 1 if the template ends there or 0 if a '**' matched nothing. Ranks of one path
        have the same length, so comparing them compares segment by segment."""
        if index == len(segments):
            out.append(((*rank, 1), node))
            if node.multi is not None:  # '**' also matches zero segments
                out.append(((*rank, 0), node.multi))
            return
        literal = node.literals.get(segments[index])
        if literal is not None:
            self._collect(literal, segments, index + 1, (*rank, _LITERAL), out)
        if node.single is not None:
            self._collect(node.single, segments, index + 1, (*rank, _SINGLE), out)
        if node.multi is not None:
            rest = len(segments) - index
            out.append((rank + (_MULTI,) * rest + (1,), node.multi))
