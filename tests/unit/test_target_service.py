"""TargetService's rules over the in-memory fakes: validation, write-only secrets sealed before
storage, MANUAL always there, per-tenant configurations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.domain.auth import SCOPES, Principal
from server.domain.dispatch import TargetSystem
from server.domain.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound
from server.domain.targets import TargetConfig
from server.services.targets import TargetService
from tests.unit.fakes import Clock, FakeCipher, FakeUnitOfWorkFactory

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
A = Principal("tenant-a", "tok-a", frozenset(SCOPES))
B = Principal("tenant-b", "tok-b", frozenset(SCOPES))
JIRA = {"base_url": "https://jira.example/", "email": "ops@example.com", "api_token": "tok-123"}


class UrlCheck:
    """Records every URL checked; refuses those listed."""

    def __init__(self, refused: dict[str, str] | None = None) -> None:
        self.refused = refused or {}
        self.checked: list[str] = []

    def __call__(self, url: str) -> str | None:
        self.checked.append(url)
        return self.refused.get(url)


class World:
    def __init__(self, refused: dict[str, str] | None = None) -> None:
        self.uow = FakeUnitOfWorkFactory()
        self.clock = Clock(NOW)
        self.cipher = FakeCipher()
        self.check = UrlCheck(refused)
        self.service = TargetService(self.uow, self.cipher, self.check, self.clock)

    def stored(self, tenant: str, target: TargetSystem):
        return self.uow.rows.targets.get((tenant, target))


@pytest.fixture
def world() -> World:
    return World()


def test_put_seals_the_secrets_before_storage_and_get_opens_them(world):
    config = world.service.put(A, "jira", JIRA)
    assert config.settings == {"base_url": "https://jira.example", "issue_type": "Task"}
    assert config.configured_secrets == ["api_token", "email"]
    stored = world.stored("tenant-a", TargetSystem.JIRA)
    assert stored.settings == config.settings
    for secret in ("tok-123", "ops@example.com"):
        assert secret not in repr(stored) and secret not in repr(config)
    assert world.service.get(A, "JIRA") == config
    assert world.service.get(A, "JIRA").secret("api_token") == "tok-123"
    assert world.check.checked == ["https://jira.example/"]


def test_a_second_put_keeps_omitted_secrets_clears_empty_ones_and_keeps_created_at(world):
    world.service.put(A, "JIRA", JIRA)
    world.clock.now = NOW + timedelta(days=1)
    second = world.service.put(A, "JIRA", {"base_url": "https://jira2.example", "email": ""})
    assert second.secrets == {"api_token": "tok-123"}
    assert (second.created_at, second.updated_at) == (NOW, NOW + timedelta(days=1))
    assert world.service.get(A, "JIRA") == second


def test_a_required_secret_is_needed_on_the_first_put_and_nothing_is_stored(world):
    with pytest.raises(InvalidArgument) as err:
        world.service.put(A, "JIRA", {"base_url": "https://jira.example"})
    assert [v.field for v in err.value.violations] == ["api_token"]
    assert world.uow.rows.targets == {}


WHSEC = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAx"


def test_a_refused_url_and_unknown_fields_are_reported_together_and_nothing_is_stored():
    world = World(refused={"https://inside.example": "must resolve to public addresses only"})
    with pytest.raises(InvalidArgument) as err:
        world.service.put(A, "WEBHOOK", {"url": "https://inside.example", "secret": "short", "table": "x"})
    assert {v.field: v.description for v in err.value.violations} == {
        "table": "does not apply to WEBHOOK",
        "url": "must resolve to public addresses only",
        "secret": "must be whsec_ followed by base64 of 24 to 64 bytes (leave it out to have one generated)",
    }
    assert world.uow.rows.targets == {} and world.uow.db.commits == 0


def test_the_url_is_checked_once_before_the_transaction(world):
    world.service.put(A, "WEBHOOK", {"url": "https://hooks.example", "secret": WHSEC})
    world.service.put(A, "WEBHOOK", {"url": "https://hooks2.example"})  # the secret is kept
    assert world.check.checked == ["https://hooks.example", "https://hooks2.example"]
    assert world.service.get(A, "WEBHOOK").secret("secret") == WHSEC


def test_manual_is_always_configured_and_cannot_be_changed_or_removed(world):
    assert world.service.get(A, "manual") == TargetConfig("tenant-a", TargetSystem.MANUAL)
    assert world.service.put(A, "MANUAL", {}) == TargetConfig("tenant-a", TargetSystem.MANUAL)
    with pytest.raises(InvalidArgument) as err:
        world.service.put(A, "MANUAL", {"url": "https://x.example"})
    assert err.value.violations[0].field == "url"
    with pytest.raises(FailedPrecondition) as err:
        world.service.delete(A, "MANUAL")
    assert err.value.reason == "INVALID_STATE"
    assert world.uow.rows.targets == {}


def test_list_is_per_tenant_sorted_and_always_includes_manual(world):
    world.service.put(A, "WEBHOOK", {"url": "https://hooks.example", "secret": WHSEC})
    world.service.put(A, "JIRA", JIRA)
    assert [c.target for c in world.service.list(A)] == [
        TargetSystem.JIRA,
        TargetSystem.MANUAL,
        TargetSystem.WEBHOOK,
    ]
    assert [c.target for c in world.service.list(B)] == [TargetSystem.MANUAL]
    with pytest.raises(NotFound):
        world.service.get(B, "JIRA")
    with pytest.raises(NotFound):
        world.service.delete(B, "JIRA")
    assert world.stored("tenant-a", TargetSystem.JIRA) is not None


def test_delete_removes_the_configuration_once(world):
    world.service.put(A, "JIRA", JIRA)
    world.service.delete(A, "jira")
    with pytest.raises(NotFound):
        world.service.get(A, "JIRA")
    with pytest.raises(NotFound):
        world.service.delete(A, "JIRA")


def test_an_unsupported_target_is_refused_by_name(world):
    for call in (
        lambda: world.service.get(A, "EMAIL"),
        lambda: world.service.put(A, "EMAIL", {}),
        lambda: world.service.delete(A, "EMAIL"),
    ):
        with pytest.raises(FailedPrecondition) as err:
            call()
        assert err.value.reason == "UNSUPPORTED_TARGET_SYSTEM"


def test_config_for_gives_dispatch_the_opened_configuration(world):
    world.service.put(A, "JIRA", JIRA)
    with world.uow(write=False) as u:
        jira = world.service.config_for(u, "tenant-a", TargetSystem.JIRA)
        manual = world.service.config_for(u, "tenant-a", TargetSystem.MANUAL)
        other = world.service.config_for(u, "tenant-b", TargetSystem.JIRA)
    assert jira.secret("api_token") == "tok-123"
    assert (manual, other) == (TargetConfig("tenant-a", TargetSystem.MANUAL), None)


def test_secrets_sealed_with_another_key_are_reported_not_leaked(world):
    world.service.put(A, "JIRA", JIRA)
    lost = TargetService(world.uow, FakeCipher(), world.check, world.clock)  # TARGET_SECRETS_KEY changed
    with pytest.raises(DomainError) as err:
        lost.get(A, "JIRA")
    assert err.value.reason == "TARGET_SECRETS_UNREADABLE"
    lost.delete(A, "JIRA")  # the documented way out that works
    lost.put(A, "JIRA", JIRA)
    assert lost.get(A, "JIRA").secret("api_token") == "tok-123"


def test_after_a_key_change_a_complete_put_configures_the_target_again(world):
    world.service.put(A, "JIRA", JIRA)
    lost = TargetService(world.uow, FakeCipher(), world.check, world.clock)
    lost.put(A, "JIRA", JIRA)
    assert lost.get(A, "JIRA").secret("api_token") == "tok-123"


def test_after_a_key_change_a_put_without_the_secrets_is_still_refused(world):
    world.service.put(A, "JIRA", JIRA)
    lost = TargetService(world.uow, FakeCipher(), world.check, world.clock)
    partial = {k: v for k, v in JIRA.items() if k != "api_token"}
    with pytest.raises(DomainError) as err:
        lost.put(A, "JIRA", partial)
    assert err.value.reason == "TARGET_SECRETS_UNREADABLE"


# -- pause and resume (API.md §7) ---------------------------------------------------------------------


def test_pause_and_resume_a_configured_target_and_a_put_keeps_it_paused(world):
    world.service.put(A, "JIRA", JIRA)
    paused = world.service.set_paused(A, " jira ", True)
    assert paused.paused and paused.secret("api_token") == "tok-123"
    assert world.stored("tenant-a", TargetSystem.JIRA).paused
    assert world.service.get(A, "JIRA").paused
    assert {t.target: t.paused for t in world.service.list(A)} == {
        TargetSystem.JIRA: True,
        TargetSystem.MANUAL: False,  # MANUAL cannot be paused
    }
    world.clock.now = NOW + timedelta(minutes=1)
    world.service.put(A, "JIRA", {**JIRA, "project_key": "OPS"})  # re-configuring does not resume it
    assert world.service.get(A, "JIRA").paused
    assert not world.service.set_paused(A, "JIRA", False).paused
    assert not world.stored("tenant-a", TargetSystem.JIRA).paused


def test_pause_refusals(world):
    world.service.put(B, "JIRA", JIRA)  # another tenant's configuration does not count
    with pytest.raises(NotFound):
        world.service.set_paused(A, "JIRA", True)
    with pytest.raises(FailedPrecondition) as err:
        world.service.set_paused(A, "MANUAL", True)
    assert err.value.reason == "INVALID_STATE"
    with pytest.raises(FailedPrecondition) as err:
        world.service.set_paused(A, "EMAIL", True)
    assert err.value.reason == "UNSUPPORTED_TARGET_SYSTEM"
    assert not world.stored("tenant-b", TargetSystem.JIRA).paused


def test_a_put_keeps_the_pause_and_says_so(world):
    world.service.put(A, "JIRA", JIRA)
    world.service.set_paused(A, "JIRA", True)
    assert world.service.put(A, "JIRA", {**JIRA, "project_key": "OPS"}).paused
    assert world.service.get(A, "JIRA").paused
