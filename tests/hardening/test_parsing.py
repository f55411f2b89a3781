"""Input the parsers used to read leniently, or fail on with a 500, refused with 400 naming the field on
REST, as a `/v1/bulk` sub-request and over gRPC alike (docs/hardening.md "Resource budgets").

- target URLs: an invalid port (`:99999`, `:abc`) or an over-long host label was a 500 with a
  traceback; spaces, control characters, backslashes, bad percent escapes, numeric hosts other than
  dotted quads (`127.1`, `2130706433`, `0x7f.1`), zones, empty labels are refused at configuration,
  whatever DISPATCH_ALLOW_PRIVATE_NETWORKS says (this stack allows private networks; nothing connects).
  Leading and trailing whitespace is trimmed from every target setting before it is checked, as before;
- amounts and currencies: `\\d` read other scripts' digits ("١٢٣" stored as 123) and `$` let a trailing
  newline through ("12.00\\n", "USD\\n").
"""

from __future__ import annotations

import json

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2

from gen.reconrouter.exceptions.v1 import exceptions_pb2, exceptions_pb2_grpc
from gen.reconrouter.targets.v1 import targets_pb2, targets_pb2_grpc
from tests.e2e.conftest import error_reason, violation_fields

BAD_URLS = [
    "https://example.com:99999/",
    "https://example.com:0/",
    "https://example.com:abc/",
    "https://example.com:+443/",
    "https://example.com:443:80/",
    "https://example.com:/",
    "https://" + "a" * 64 + ".example.com/",
    "https://" + ".".join(["abcdefghij"] * 24) + ".com/",  # 268 characters
    "https://a..example.com/",
    "https://-a.example.com/",
    "https://exa mple.com/",
    "https://example.com/a\tb",
    "https://ex\u00e4mple.com/",
    "https://example.com\\@127.0.0.1/",
    "https://example.com/%zz",
    "https://127.1/",
    "https://2130706433/",
    "https://0x7f.0.0.1/",
    "https://1.2.3.4.5/",
    "https://256.0.0.1/",
    "https://[fe80::1%25eth0]/",
    "https://[::1/",
    "https://example.com/?",
    "https:example.com",
]
BAD_AMOUNTS = ["\u0661\u0662\u0663", "12.00\n", "\uff11\uff12", "1_000", " 12", "NaN", "1e3", "12.00 "]
BAD_CURRENCIES = ["USD\n", "usd", "\uff35\uff33\uff24"]


def grpc_violations(err: grpc.RpcError) -> list[str]:
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, err
    status = status_pb2.Status.FromString(dict(err.trailing_metadata())["grpc-status-details-bin"])
    bad = error_details_pb2.BadRequest()
    next(d for d in status.details if d.Is(bad.DESCRIPTOR)).Unpack(bad)
    return [v.field for v in bad.field_violations]


def bulk_item(client: httpx.Client, request: dict) -> dict:
    response = client.post("/v1/bulk", json={"requests": [request]})
    assert response.status_code == 200, response.text
    [item] = response.json()
    return item


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_target_urls_are_400_naming_the_field_everywhere(client, channel, token, url):
    body = {"url": url}
    rest = client.put("/v1/targets/WEBHOOK", json=body)
    assert rest.status_code == 400, rest.text
    assert error_reason(rest) == "INVALID_ARGUMENT" and violation_fields(rest) == {"url"}

    item = bulk_item(client, {"url": "/v1/targets/WEBHOOK", "method": "PUT", "data": body})
    assert item["status"] == 400, item
    assert "Traceback" not in json.dumps(item)

    stub = targets_pb2_grpc.TargetsServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.PutTarget(
            targets_pb2.PutTargetRequest(target_system="JIRA", base_url=url, api_token="t"),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=30,
        )
    assert grpc_violations(caught.value) == ["base_url"]
    assert [t["target_system"] for t in client.get("/v1/targets").json()["targets"]] == ["MANUAL"]


@pytest.mark.parametrize(
    ("field", "value"), [("amount", a) for a in BAD_AMOUNTS] + [("currency", c) for c in BAD_CURRENCIES]
)
def test_lenient_numbers_and_codes_are_400_naming_the_field_everywhere(client, channel, token, field, value):
    body = {"transaction_id": "parse", "amount": "12.00", "currency": "USD", field: value}
    rest = client.post("/v1/exceptions", json=body)
    assert rest.status_code == 400, rest.text
    assert field in violation_fields(rest)

    item = bulk_item(client, {"url": "/v1/exceptions", "method": "POST", "data": body})
    assert item["status"] == 400, item
    assert field in str(item["contents"])

    stub = exceptions_pb2_grpc.ExceptionsServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateException(
            exceptions_pb2.CreateExceptionRequest(**body),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=30,
        )
    assert field in grpc_violations(caught.value)


def test_well_formed_values_still_pass(client):
    fine = ("https://example.com:8443/hooks/a%20b", "https://xn--bcher-kva.example/", "http://127.0.0.1:9/x")
    for url in fine:
        # Private networks are allowed on this stack; nothing connects when configuring.
        response = client.put("/v1/targets/WEBHOOK", json={"url": url})
        assert response.status_code == 200, (url, response.text)
    assert client.delete("/v1/targets/WEBHOOK").status_code == 200
    good = {"transaction_id": "ok", "amount": "12.5", "currency": "EUR"}
    created = client.post("/v1/exceptions", json=good)
    assert created.status_code == 200 and created.json()["amount"] == "12.50", created.text
