"""Per-tenant target configuration: which fields each target system takes, which are write-only,
and how a PUT body becomes a configuration."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

from server.domain.dispatch import TargetSystem
from server.domain.errors import Violations


@dataclass(frozen=True)
class FieldSpec:
    name: str
    required: bool = False
    # Write-only: stored encrypted, never returned or logged. Credentials count (email, username).
    secret: bool = False
    default: str | None = None
    url: bool = False
    pattern: re.Pattern[str] | None = None
    pattern_hint: str = ""
    min_length: int = 0
    max_length: int = 255


_PROJECT_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,49}")
_TABLE = re.compile(r"[a-z0-9_]{1,80}")

SPECS: dict[TargetSystem, tuple[FieldSpec, ...]] = {
    TargetSystem.JIRA: (
        FieldSpec("base_url", required=True, url=True, max_length=2000),
        # Present: Jira Cloud basic auth (email + API token); absent: Server/Data Center bearer token.
        FieldSpec("email", secret=True),
        FieldSpec("api_token", required=True, secret=True, max_length=2000),
        FieldSpec("project_key", pattern=_PROJECT_KEY, pattern_hint="a JIRA project key such as OPS"),
        FieldSpec("issue_type", default="Task"),
    ),
    TargetSystem.SERVICENOW: (
        FieldSpec("instance_url", required=True, url=True, max_length=2000),
        FieldSpec("username", required=True, secret=True),
        FieldSpec("password", required=True, secret=True, max_length=2000),
        FieldSpec("table", default="incident", pattern=_TABLE, pattern_hint="a table name such as incident"),
    ),
    TargetSystem.WEBHOOK: (
        FieldSpec("url", required=True, url=True, max_length=2000),
        FieldSpec("secret", required=True, secret=True, min_length=16, max_length=1000),
    ),
    TargetSystem.MANUAL: (),
}

ALL_FIELDS = sorted({spec.name for specs in SPECS.values() for spec in specs})


@dataclass(frozen=True)
class TargetConfig:
    """One tenant's configuration of one target system, secrets decrypted (repr hides them)."""

    tenant_id: str
    target: TargetSystem
    settings: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Deliveries to a paused target wait (API.md §7).
    paused: bool = False

    @property
    def configured_secrets(self) -> list[str]:
        return sorted(name for name, value in self.secrets.items() if value)

    def setting(self, name: str) -> str:
        return self.settings.get(name, "")

    def secret(self, name: str) -> str:
        return self.secrets.get(name, "")


def manual_config(tenant_id: str) -> TargetConfig:
    """Every tenant has MANUAL; nothing is stored for it."""
    return TargetConfig(tenant_id, TargetSystem.MANUAL)


@dataclass(frozen=True)
class StoredTarget:
    """A configuration as stored: settings in clear, secrets as one encrypted blob."""

    tenant_id: str
    target: TargetSystem
    settings: dict[str, str]
    secrets_ciphertext: str
    created_at: datetime
    updated_at: datetime
    paused: bool = False


# (url) -> None, or why it is refused ("must use https", "must resolve to public addresses").
UrlCheck = Callable[[str], str | None]


# A DNS label as host names use them (letters, digits, hyphens; 1-63 characters; no hyphen at
# either end), and a port as digits only (urllib reads "+1", " 1" and other scripts' digits).
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_MAX_HOST_LENGTH = 253


def url_problem(value: str) -> str | None:
    """Syntax only; where it may point is the UrlCheck's business.

    Strict on purpose: whatever urllib, the resolver or the HTTP client would read differently from
    each other is refused here instead (an invalid port or an over-long label used to fail later with
    a 500; "127.1" and "2130706433" are 127.0.0.1 to the resolver).
    """
    if any(ord(char) <= 0x20 or ord(char) >= 0x7F for char in value):
        return "must be ASCII without spaces or control characters (an IDN host in its xn-- form)"
    if "\\" in value:
        return "must not contain a backslash"
    if _BAD_ESCAPE.search(value):
        return "must percent-encode as % and two hex digits"
    try:
        parts = urlsplit(value)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not value.lower().startswith(f"{parts.scheme}://"):
        return "must be an absolute http(s) URL"
    if "@" in parts.netloc:
        return "must not carry credentials; use the credential fields"  # they would end up in logs
    if "?" in value or "#" in value:
        return "must not have a query or fragment"
    host, port = _split_netloc(parts.netloc)
    if port is not None and (not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535):
        return "must have a port from 1 to 65535"
    return _host_problem(host)


def _split_netloc(netloc: str) -> tuple[str, str | None]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            return netloc, None
        rest = netloc[end + 1 :]
        return netloc[: end + 1], (rest[1:] if rest.startswith(":") else (rest or None))
    host, colon, port = netloc.partition(":")
    return host, (port if colon else None)


def _host_problem(host: str) -> str | None:
    if not host:
        return "must be an absolute http(s) URL"
    if host.startswith("["):
        try:
            # No zone ("%25eth0"): it names an interface of this machine, never a public address.
            ipaddress.IPv6Address(host[1:-1] if host.endswith("]") and "%" not in host else "")
        except ValueError:
            return "must have a valid IPv6 address in brackets"
        return None
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if len(name) > _MAX_HOST_LENGTH or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return "must have a host name of labels of 1-63 letters, digits or hyphens, at most 253 characters"
    if labels[-1].isdigit() or labels[-1].lower().startswith("0x"):
        # Numeric: an IPv4 address, and only in its dotted-quad spelling (no octal, hex or short forms).
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return "must have an IPv4 address as four decimal numbers (a.b.c.d)"
    return None


def build_config(
    tenant_id: str,
    target: TargetSystem,
    values: Mapping[str, str],
    previous: TargetConfig | None,
    check_url: UrlCheck,
    now: datetime,
) -> TargetConfig:
    """A PUT body (the fields present in it) -> the new configuration.

    PUT replaces the settings; a write-only field left out keeps its stored value (a caller cannot
    read it back to resend it), and an empty one clears it (say, JIRA `email` to switch to a bearer
    token). Every problem is reported at once, as field violations.
    """
    specs = {spec.name: spec for spec in SPECS[target]}
    v = Violations()
    for name in sorted(values):
        if name not in specs:
            v.add(name, f"does not apply to {target.value}")
    settings: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for spec in SPECS[target]:
        if spec.name in values:
            value = values[spec.name].strip()
        elif spec.secret and previous is not None:
            value = previous.secret(spec.name)
        else:
            value = ""
        if not value and spec.default is not None:
            value = spec.default
        problem = _field_problem(spec, value, check_url)
        if problem:
            v.add(spec.name, problem)
        elif value:
            (secrets if spec.secret else settings)[spec.name] = value.rstrip("/") if spec.url else value
    v.raise_if_any()
    created = previous.created_at if previous is not None and previous.created_at else now
    return TargetConfig(tenant_id, target, settings, secrets, created, now)


def _field_problem(spec: FieldSpec, value: str, check_url: UrlCheck) -> str | None:
    if not value:
        return "is required" if spec.required else None
    if len(value) > spec.max_length:
        return f"must be at most {spec.max_length} characters"
    if len(value) < spec.min_length:
        return f"must be at least {spec.min_length} characters"
    if spec.pattern is not None and not spec.pattern.fullmatch(value):
        return f"must be {spec.pattern_hint}"
    if spec.url:
        return url_problem(value) or check_url(value)
    return None


class SecretCipher(Protocol):
    """Encrypts target secrets at rest (storage sees only the ciphertext)."""

    def encrypt(self, plaintext: bytes) -> str: ...

    def decrypt(self, ciphertext: str) -> bytes:
        """Raises a DomainError when the key cannot decrypt it (say, TARGET_SECRETS_KEY changed)."""
        ...
