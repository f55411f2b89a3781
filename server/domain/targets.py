"""Per-tenant target configuration: which fields each target system takes, which are write-only,
and how a PUT body becomes a configuration."""

from __future__ import annotations

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


_PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,49}$")
_TABLE = re.compile(r"^[a-z0-9_]{1,80}$")

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


def url_problem(value: str) -> str | None:
    """Syntax only; where it may point is the UrlCheck's business."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http(s) URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials; use the credential fields"  # they would end up in logs
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
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
    if spec.pattern is not None and not spec.pattern.match(value):
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
