"""Target configuration rules, dispatch markers, the SSRF address table, secret sealing, converters."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from reconrouter.targets.v1 import targets_pb2 as pb

from server.connectors.http import retry_after_seconds
from server.connectors.ssrf import AddressPolicy, is_public
from server.connectors.webhook import sign
from server.domain.dispatch import TargetSystem, external_marker
from server.domain.errors import DomainError, InvalidArgument
from server.domain.targets import TargetConfig, build_config
from server.rpc.target_converters import put_request_to_values, target_to_proto
from server.storage.secret_box import FernetSecretBox, load_keys

NOW = datetime(2026, 1, 2, tzinfo=UTC)
ALLOW = lambda url: None  # noqa: E731


def test_a_put_keeps_omitted_secrets_and_applies_defaults():
    first = build_config(
        "t",
        TargetSystem.JIRA,
        {"base_url": "https://j.example/", "api_token": "tok", "email": "a@b"},
        None,
        ALLOW,
        NOW,
    )
    assert first.settings == {"base_url": "https://j.example", "issue_type": "Task"}
    assert first.secrets == {"api_token": "tok", "email": "a@b"} and "tok" not in repr(first)
    second = build_config(
        "t", TargetSystem.JIRA, {"base_url": "https://j.example", "email": ""}, first, ALLOW, NOW
    )
    assert second.secrets == {"api_token": "tok"}  # kept; email cleared (bearer token from now on)
    assert second.configured_secrets == ["api_token"]


def test_every_problem_is_reported_at_once():
    with pytest.raises(InvalidArgument) as caught:
        build_config(
            "t",
            TargetSystem.SERVICENOW,
            {"instance_url": "https://x", "table": "Bad Table", "url": "https://y"},
            None,
            lambda url: "must resolve to public addresses only",
            NOW,
        )
    fields = {v.field for v in caught.value.violations}
    assert fields == {"instance_url", "table", "url", "username", "password"}


@pytest.mark.parametrize(
    ("queue", "expected_suffix"),
    [("", ""), ("OPS", ":OPS"), ("Finance Ops", ":~"), ("a,b", ":~"), ("x" * 41, ":~")],
)
def test_markers_fit_labels_correlation_ids_and_in_queries(queue, expected_suffix):
    marker = external_marker(TargetSystem.SERVICENOW, "5b1e0c1e-0000-4000-8000-000000000000", queue)
    assert marker.startswith("dispatch:SERVICENOW:5b1e0c1e-0000-4000-8000-000000000000" + expected_suffix)
    assert len(marker) <= 100 and " " not in marker and "," not in marker
    assert marker == external_marker(TargetSystem.SERVICENOW, "5b1e0c1e-0000-4000-8000-000000000000", queue)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.5", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::7f00:1", False),
        ("2002:7f00:1::", False),
    ],
)
def test_public_addresses(address, public):
    assert is_public(ipaddress.ip_address(address)) is public


def test_url_policy_at_configuration_time():
    answers = {"jira.example": ["93.184.216.34"], "inside.example": ["93.184.216.34", "10.0.0.7"]}
    policy = AddressPolicy(allow_private=False, resolver=lambda host, port: answers[host])
    assert policy.check_url("https://jira.example") is None
    assert policy.check_url("http://jira.example") == "must use https"
    assert policy.check_url("https://inside.example") == "must resolve to public addresses only"
    assert AddressPolicy(allow_private=True).check_url("http://127.0.0.1:8080") is None


def test_retry_after_parsing():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_webhook_signature_is_hmac_sha256_of_the_body():
    # RFC 4231 test case 2.
    assert sign("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_secret_box_rotates_and_refuses_foreign_ciphertext(tmp_path):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed = FernetSecretBox([old]).encrypt(b"token")
    assert FernetSecretBox([new, old]).decrypt(sealed) == b"token"
    with pytest.raises(DomainError) as caught:
        FernetSecretBox([new]).decrypt(sealed)
    assert caught.value.reason == "TARGET_SECRETS_UNREADABLE"
    key_file = tmp_path / "var" / "key"
    assert load_keys("", key_file) == load_keys("", key_file)  # generated once, then reused
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_converters_never_carry_secrets():
    request = pb.PutTargetRequest(
        target_system="JIRA", base_url="https://j.example", api_token="tok", email=""
    )
    assert put_request_to_values(request) == {
        "base_url": "https://j.example",
        "api_token": "tok",
        "email": "",
    }
    config = TargetConfig(
        "t", TargetSystem.JIRA, {"base_url": "https://j.example"}, {"api_token": "s3cr3t-value"}, NOW, NOW
    )
    message = target_to_proto(config)
    assert message.base_url == "https://j.example" and list(message.configured_secrets) == ["api_token"]
    assert b"s3cr3t-value" not in message.SerializeToString()
