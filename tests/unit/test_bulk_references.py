"""`@{id.path}` references of /v1/bulk sub-requests."""

import pytest

from server.bulk import references as refs

CONTENTS = {"id": "e/1", "items": [{"id": "a"}, {"id": "b"}], "n": 3, "ok": True, "obj": {"k": "v"}}


def lookup(reference):
    return refs.resolve(reference, CONTENTS)


def test_parse_paths_with_names_and_indices():
    (found,) = refs.in_text("/v1/exceptions/@{create.items[1].id}")
    assert (found.target, found.path, found.text) == ("create", ("items", 1, "id"), "@{create.items[1].id}")
    assert refs.in_text("@{x}")[0].path == ()
    assert refs.in_text("no references") == []


@pytest.mark.parametrize("text", ["@{}", "@{a..b}", "@{a b}", "@{a.[0]}", "@{" + "x" * 65 + "}"])
def test_malformed_references_are_refused(text):
    with pytest.raises(refs.ReferenceSyntaxError):
        refs.in_text(text)


def test_resolve_walks_objects_and_arrays():
    assert refs.resolve(refs.in_text("@{c.items[0].id}")[0], CONTENTS) == "a"
    assert refs.resolve(refs.in_text("@{c.items.1.id}")[0], CONTENTS) == "b"
    assert refs.resolve(refs.in_text("@{c}")[0], CONTENTS) is CONTENTS
    for missing in ("@{c.nope}", "@{c.items[5]}", "@{c.id.deeper}", "@{c.items.x}"):
        with pytest.raises(refs.Unresolvable):
            refs.resolve(refs.in_text(missing)[0], CONTENTS)


def test_data_keeps_the_type_of_a_whole_reference_and_interpolates_text():
    data = {
        "exception_ids": ["@{c.id}"],
        "limit": "@{c.n}",
        "flag": "@{c.ok}",
        "nested": "@{c.obj}",
        "note": "see @{c.id} (@{c.n} items, @{c.obj})",
        "@{c.id}": "keys are never references",
    }
    assert refs.substitute_json(data, lookup) == {
        "exception_ids": ["e/1"],
        "limit": 3,
        "flag": True,
        "nested": {"k": "v"},
        "note": 'see e/1 (3 items, {"k":"v"})',
        "@{c.id}": "keys are never references",
    }
    found = [r.text for r in refs.in_json(data)]
    assert found == ["@{c.id}", "@{c.n}", "@{c.ok}", "@{c.obj}", "@{c.id}", "@{c.n}", "@{c.obj}"]


def test_urls_get_one_encoded_value_per_reference():
    assert refs.substitute_url("/v1/exceptions/@{c.id}/history", lookup) == "/v1/exceptions/e%2F1/history"
    assert refs.substitute_url("status=@{c.ok}&x=@{c.obj}", lookup) == "status=true&x=%7B%22k%22%3A%22v%22%7D"
