"""Per-tenant target configuration: put, get, list, delete; and the decrypted configuration that
dispatch builds connectors from. Secrets are encrypted here, before storage sees them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta

from server.domain.auth import Principal
from server.domain.dispatch import TargetSystem, parse_target_system
from server.domain.errors import DomainError, FailedPrecondition, NotFound
from server.domain.hooks import HOOK_SYSTEMS, new_hook_id
from server.domain.ports import UnitOfWork, UnitOfWorkFactory
from server.domain.targets import (
    SPECS,
    SecretCipher,
    StoredTarget,
    TargetConfig,
    UrlCheck,
    build_config,
    manual_config,
    rotate_webhook_secret,
)
from server.services.clock import Clock, utc_now


class TargetService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        cipher: SecretCipher,
        check_url: UrlCheck,
        clock: Clock = utc_now,
        *,
        secret_overlap: timedelta = timedelta(hours=24),
    ) -> None:
        self._uow = uow
        # How long a rotated WEBHOOK secret still signs beside its successor (WEBHOOK_SECRET_OVERLAP_HOURS).
        self._secret_overlap = secret_overlap
        self._cipher = cipher
        self._check_url = check_url
        self._clock = clock
        # Tells this process's delivery workers that a resumed target's deliveries are due now.
        self.resumed: Callable[[], None] = lambda: None

    def put(self, principal: Principal, target_system: str, values: Mapping[str, str]) -> TargetConfig:
        target = parse_target_system(target_system)
        tenant = principal.tenant_id
        if target is TargetSystem.MANUAL:
            build_config(tenant, target, values, None, self._check_url, self._clock())  # no fields
            return manual_config(tenant)
        # Validate (the URL check resolves DNS) before taking any lock, with no secrets merged yet.
        checked = _without_secret_requirements(target, values)
        build_config(tenant, target, checked, None, self._check_url, self._clock())
        with self._uow(write=True) as uow:
            previous = self._previous(uow, tenant, target, values)
            config = build_config(tenant, target, values, previous, lambda _url: None, self._clock())
            if target in HOOK_SYSTEMS:  # its inbound path stays what it was (API.md §9)
                hook_id = previous.inbound_hook_id if previous is not None else None
                config = replace(config, inbound_hook_id=hook_id or new_hook_id())
            uow.targets.put(self._seal(config))
        # A PUT replaces the settings, not the pause (the stored flag is left as it is).
        return replace(config, paused=previous is not None and previous.paused)

    def get(self, principal: Principal, target_system: str) -> TargetConfig:
        target = parse_target_system(target_system)
        if target is TargetSystem.MANUAL:
            return manual_config(principal.tenant_id)
        with self._uow(write=False) as uow:
            config = self._load(uow, principal.tenant_id, target)
        if config is None:
            raise NotFound(f"target system {target.value} is not configured")
        return config

    def list(self, principal: Principal) -> list[TargetConfig]:
        with self._uow(write=False) as uow:
            stored = uow.targets.list(principal.tenant_id)
        configured = [self._open(s) for s in stored]
        return sorted([*configured, manual_config(principal.tenant_id)], key=lambda c: c.target.value)

    def delete(self, principal: Principal, target_system: str) -> None:
        target = parse_target_system(target_system)
        if target is TargetSystem.MANUAL:
            raise FailedPrecondition(
                "MANUAL is always available and cannot be removed", reason="INVALID_STATE"
            )
        with self._uow(write=True) as uow:
            if not uow.targets.delete(principal.tenant_id, target):
                raise NotFound(f"target system {target.value} is not configured")

    def set_paused(self, principal: Principal, target_system: str, paused: bool) -> TargetConfig:
        """Pause or resume deliveries to a configured target (API.md §7)."""
        target = parse_target_system(target_system)
        if target is TargetSystem.MANUAL:
            raise FailedPrecondition("MANUAL completes at once and cannot be paused", reason="INVALID_STATE")
        with self._uow(write=True) as uow:
            if not uow.targets.set_paused(principal.tenant_id, target, paused):
                raise NotFound(f"target system {target.value} is not configured")
            config = self._load(uow, principal.tenant_id, target)
        assert config is not None
        if not paused:
            self.resumed()
        return config

    def rotate_secret(self, principal: Principal, target_system: str) -> TargetConfig:
        """A new WEBHOOK secret, returned in this answer only; the old one keeps signing beside it
        for WEBHOOK_SECRET_OVERLAP_HOURS (API.md §9)."""
        target = parse_target_system(target_system)
        if target is not TargetSystem.WEBHOOK:
            raise FailedPrecondition(
                f"{target.value} has no secret the service generates; only WEBHOOK secrets rotate",
                reason="INVALID_STATE",
            )
        with self._uow(write=True) as uow:
            config = self._load(uow, principal.tenant_id, target)
            if config is None:
                raise NotFound(f"target system {target.value} is not configured")
            rotated = rotate_webhook_secret(config, self._clock(), self._secret_overlap)
            uow.targets.put(self._seal(rotated))
        return rotated

    def config_for(self, uow: UnitOfWork, tenant_id: str, target: TargetSystem) -> TargetConfig | None:
        """The configuration dispatch and the delivery workers use, read in their unit of work."""
        if target is TargetSystem.MANUAL:
            return manual_config(tenant_id)
        return self._load(uow, tenant_id, target)

    def _previous(
        self, uow: UnitOfWork, tenant_id: str, target: TargetSystem, values: Mapping[str, str]
    ) -> TargetConfig | None:
        """The stored configuration a PUT merges into. When its secrets cannot be decrypted any more
        (TARGET_SECRETS_KEY changed), a PUT that sends every required write-only field replaces them,
        which is what the error tells operators to do; one that does not is refused with that error."""
        try:
            return self._load(uow, tenant_id, target)
        except DomainError as exc:
            if exc.reason != "TARGET_SECRETS_UNREADABLE":
                raise
            required = [spec.name for spec in SPECS[target] if spec.secret and spec.required]
            if not all(values.get(name, "").strip() for name in required):
                raise
            stored = uow.targets.get(tenant_id, target)
            assert stored is not None
            return TargetConfig(
                tenant_id,
                target,
                created_at=stored.created_at,
                paused=stored.paused,
                inbound_hook_id=stored.inbound_hook_id,
            )

    # -- sealing ---------------------------------------------------------------------------------

    def _load(self, uow: UnitOfWork, tenant_id: str, target: TargetSystem) -> TargetConfig | None:
        stored = uow.targets.get(tenant_id, target)
        return self._open(stored) if stored is not None else None

    def _seal(self, config: TargetConfig) -> StoredTarget:
        assert config.created_at is not None and config.updated_at is not None
        secrets = json.dumps(config.secrets, sort_keys=True).encode()
        return StoredTarget(
            config.tenant_id,
            config.target,
            dict(config.settings),
            self._cipher.encrypt(secrets),
            config.created_at,
            config.updated_at,
            inbound_hook_id=config.inbound_hook_id,
        )

    def _open(self, stored: StoredTarget) -> TargetConfig:
        secrets = json.loads(self._cipher.decrypt(stored.secrets_ciphertext))
        return TargetConfig(
            stored.tenant_id,
            stored.target,
            dict(stored.settings),
            secrets,
            stored.created_at,
            stored.updated_at,
            stored.paused,
            inbound_hook_id=stored.inbound_hook_id,
        )

    def by_hook_id(self, uow: UnitOfWork, hook_id: str) -> TargetConfig | None:
        """The configuration whose inbound path holds `hook_id` (any tenant's: the hook is how an
        unauthenticated post names its tenant), secrets opened."""
        stored = uow.targets.by_hook_id(hook_id)
        return self._open(stored) if stored is not None else None


def _without_secret_requirements(target: TargetSystem, values: Mapping[str, str]) -> Mapping[str, str]:
    """For the lock-free first validation: required secrets may legitimately be absent (kept from the
    stored configuration), so stand-ins fill them; the real merge happens in the transaction."""
    filled = dict(values)
    for spec in SPECS[target]:
        if spec.secret and spec.required and not spec.generated and spec.name not in filled:
            filled[spec.name] = "x" * max(spec.min_length, 1)
    return filled
