"""Standard Webhooks signing (API.md §9): whsec_ secrets generated and checked, rotation overlap,
and signatures that the reference `standardwebhooks` library accepts (never our own verifier)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks

from server.connectors.webhook import standard_signature
from server.domain.dispatch import TargetSystem
from server.domain.errors import InvalidArgument
from server.domain.targets import (
    HMAC_SHA256_HEX,
    PREVIOUS_SECRET,
    STANDARD_WEBHOOKS,
    build_config,
    rotate_webhook_secret,
)
from server.rpc.target_converters import target_to_proto

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALLOW = lambda url: None  # noqa: E731
URL = {"url": "https://hooks.example/in"}


def put(values, previous=None, now=NOW):
    return build_config("t", TargetSystem.WEBHOOK, values, previous, ALLOW, now)


def test_a_put_without_a_secret_generates_a_whsec_secret_shown_in_that_answer_only():
    config = put(URL)
    secret = config.generated_secret
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) >= 24
    assert config.secret("secret") == secret and config.signature_scheme == STANDARD_WEBHOOKS
    assert target_to_proto(config).secret == secret
    kept = put({"url": "https://hooks.example/other"}, previous=config)
    assert kept.secret("secret") == secret and kept.generated_secret == ""
    assert not target_to_proto(kept).HasField("secret")
    assert secret not in repr(config) and secret not in repr(kept)
    again = put({**URL, "secret": ""}, previous=config)  # an empty secret: a new one
    assert again.generated_secret and again.generated_secret != secret


@pytest.mark.parametrize(
    "secret",
    ["short", "s" * 40, "whsec_" + base64.b64encode(b"x" * 23).decode(), "whsec_not base64!"],
)
def test_a_standard_webhooks_secret_must_be_whsec_base64_of_at_least_24_bytes(secret):
    with pytest.raises(InvalidArgument) as caught:
        put({**URL, "secret": secret})
    assert [v.field for v in caught.value.violations] == ["secret"]


def test_the_hex_scheme_takes_any_secret_of_16_characters_and_refuses_unknown_schemes():
    assert put({**URL, "secret": "s" * 16, "signature_scheme": HMAC_SHA256_HEX}).secret("secret") == "s" * 16
    with pytest.raises(InvalidArgument) as caught:
        put({**URL, "secret": "s" * 15, "signature_scheme": HMAC_SHA256_HEX})
    assert [v.field for v in caught.value.violations] == ["secret"]
    with pytest.raises(InvalidArgument) as caught:
        put({**URL, "signature_scheme": "md5"})
    assert [v.field for v in caught.value.violations] == ["signature_scheme"]


def test_switching_to_standard_webhooks_with_a_stored_hex_secret_asks_for_a_new_secret():
    hex_config = put({**URL, "secret": "s" * 16, "signature_scheme": HMAC_SHA256_HEX})
    with pytest.raises(InvalidArgument) as caught:
        put(URL, previous=hex_config)
    assert "stored secret" in caught.value.violations[0].description
    assert put({**URL, "secret": ""}, previous=hex_config).generated_secret


def test_signatures_verify_with_the_reference_library_across_a_rotation():
    now = datetime.now(UTC).replace(microsecond=0)  # the library checks freshness against its clock
    first = put(URL)
    body = b'{"type":"exception.dispatched","timestamp":"2026-03-01T12:00:00Z","data":{}}'
    # Rotated 23 hours ago with a 24-hour overlap: both secrets sign, either receiver accepts.
    during = rotate_webhook_secret(first, now - timedelta(hours=23), timedelta(hours=24))
    old, new = first.secret("secret"), during.generated_secret
    assert new != old and during.secret("secret") == new and during.secret(PREVIOUS_SECRET) == old
    assert target_to_proto(during).previous_secret_expires_at.ToDatetime(UTC) == now + timedelta(hours=1)
    headers = _headers(during.signing_secrets(now), "msg-1", now, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert _verify(old, body, headers) and _verify(new, body, headers)
    # Rotated 25 hours ago: the overlap is over, only the new secret signs.
    after = rotate_webhook_secret(first, now - timedelta(hours=25), timedelta(hours=24))
    headers = _headers(after.signing_secrets(now), "msg-2", now, body)
    assert _verify(after.generated_secret, body, headers) and not _verify(old, body, headers)
    assert not _verify(after.generated_secret, body, {**headers, "webhook-id": "msg-3"})  # id is signed
    assert not _verify(after.generated_secret, body + b" ", headers)  # and the body


def test_a_put_that_keeps_the_secret_keeps_the_rotation_and_one_with_a_new_secret_ends_it():
    rotated = rotate_webhook_secret(put(URL), NOW, timedelta(hours=1))
    kept = put({"url": "https://hooks.example/moved"}, previous=rotated)
    assert kept.signing_secrets(NOW) == rotated.signing_secrets(NOW) and len(kept.signing_secrets(NOW)) == 2
    replaced = put({**URL, "secret": ""}, previous=rotated)
    assert replaced.signing_secrets(NOW) == [replaced.generated_secret]
    assert "previous_secret" not in target_to_proto(rotated).configured_secrets


def _headers(secrets: list[str], msg_id: str, at: datetime, body: bytes) -> dict[str, str]:
    stamp = int(at.timestamp())
    signature = standard_signature(secrets, msg_id, stamp, body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}


def _verify(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        standardwebhooks.Webhook(secret).verify(body, headers)
    except standardwebhooks.WebhookVerificationError:
        return False
    return True
