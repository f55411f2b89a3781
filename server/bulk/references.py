"""References to earlier results in a sub-request's url and data, Salesforce-composite style:
`@{create.id}`, `@{list.items[0].id}` (or `@{list.items.0.id}`).

- `create` is the `id` of an earlier sub-request; the path walks its JSON `contents`.
- In data, a string that is exactly one reference becomes the referenced JSON value (number, object,
  ...); a reference inside a longer string is replaced by its text. Only string values are searched,
  never keys, so a reference always sits inside a JSON string.
- In the url, the referenced value's text is percent-encoded: it is one value (one path segment or
  one query value), never URL syntax.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_OCCURRENCE = re.compile(r"@\{([^{}]*)\}")
_GRAMMAR = re.compile(r"([A-Za-z0-9_-]{1,64})((?:\.[^.\[\]{}\s]+|\[\d+\])*)")
_STEP = re.compile(r"\.([^.\[\]{}\s]+)|\[(\d+)\]")


class ReferenceSyntaxError(ValueError):
    pass


class Unresolvable(LookupError):
    """The path does not exist in the referenced result."""


@dataclass(frozen=True)
class Reference:
    text: str  # "@{create.id}" as written
    target: str  # "create"
    path: tuple[str | int, ...]  # ("id",); an int only from `[n]`


def parse(inner: str, text: str) -> Reference:
    found = _GRAMMAR.fullmatch(inner)
    if found is None:
        raise ReferenceSyntaxError(f"{text} is not a reference of the form @{{id.path.to.field}}")
    try:
        path = tuple(int(index) if index else name for name, index in _STEP.findall(found.group(2)))
    except ValueError:
        # `[n]` with more digits than int() converts (sys.get_int_max_str_digits): no list is that long.
        raise ReferenceSyntaxError(f"{text} has an index too large for any list") from None
    return Reference(text, found.group(1), path)


def in_text(text: str) -> list[Reference]:
    return [parse(m.group(1), m.group(0)) for m in _OCCURRENCE.finditer(text)]


def in_json(value: Any) -> Iterator[Reference]:
    if isinstance(value, str):
        yield from in_text(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from in_json(item)
    elif isinstance(value, list):
        for item in value:
            yield from in_json(item)


def resolve(reference: Reference, contents: Any) -> Any:
    current = contents
    for step in reference.path:
        if isinstance(current, dict) and str(step) in current:
            current = current[str(step)]
        elif isinstance(current, list) and (index := _index(step)) is not None and index < len(current):
            current = current[index]
        else:
            raise Unresolvable(f"{reference.text}: the result of '{reference.target}' has no such field")
    return current


def _index(step: str | int) -> int | None:
    if isinstance(step, int):
        return step
    if not step.isdigit():
        return None
    try:
        return int(step)
    except ValueError:
        # A digit int() does not read ("²"), or more digits than it converts: no such element.
        return None


Lookup = Callable[[Reference], Any]


def substitute_json(value: Any, lookup: Lookup) -> Any:
    if isinstance(value, str):
        whole = _OCCURRENCE.fullmatch(value)
        if whole is not None:
            return lookup(parse(whole.group(1), value))
        return _OCCURRENCE.sub(lambda m: as_text(lookup(parse(m.group(1), m.group(0)))), value)
    if isinstance(value, dict):
        return {k: substitute_json(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_json(v, lookup) for v in value]
    return value


def substitute_url(url: str, lookup: Lookup) -> str:
    return _OCCURRENCE.sub(lambda m: quote(as_text(lookup(parse(m.group(1), m.group(0)))), safe=""), url)


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"))
