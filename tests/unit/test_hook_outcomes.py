"""HookService reports each post's outcome (the hook metric, docs/integrations.md): receipts and the
refusals only it can tell apart (a bad signature and an unknown hook are both 401 to the caller)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from server.domain.auth import SCOPES, Principal
from server.domain.errors import InvalidArgument, PayloadTooLarge, Unauthenticated
from server.services.hooks import HookService
from server.services.targets import TargetService
from tests.support.standins import hub_signature
from tests.unit.fakes import Clock, FakeCipher, FakeUnitOfWorkFactory
from tests.unit.test_target_service import JIRA, UrlCheck

NOW = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
A = Principal("tenant-a", "tok-a", frozenset(SCOPES))
SECRET = "inbound-secret-0123456789"


class World:
    def __init__(self) -> None:
        self.uow = FakeUnitOfWorkFactory()
        self.clock = Clock(NOW)
        self.targets = TargetService(self.uow, FakeCipher(), UrlCheck(), self.clock)
        config = self.targets.put(A, "JIRA", {**JIRA, "inbound_secret": SECRET})
        assert config.inbound_hook_id
        self.hook_id = config.inbound_hook_id
        self.seen: list[tuple[str, str]] = []
        self.hooks = self.service(self.targets)

    def service(self, targets: TargetService) -> HookService:
        return HookService(self.uow, targets, 4096, self.clock, observe=lambda *seen: self.seen.append(seen))

    def post(self, body: bytes, signature: str | None = None, hook_id: str | None = None) -> str:
        """Authenticates and receives like the RPC does; the receipt status."""
        signature = hub_signature(SECRET, body) if signature is None else signature
        principal = self.hooks.authenticate("JIRA", hook_id or self.hook_id, body, signature)
        return self.hooks.receive(principal, "JIRA", body, {"X-Atlassian-Webhook-Identifier": "ev-1"}).status


@pytest.fixture
def world() -> World:
    return World()


def issue(key: str) -> bytes:
    done = {"statusCategory": {"key": "done"}, "name": "Done"}
    return json.dumps({"issue": {"key": key, "fields": {"status": done}}}).encode()


def test_each_post_is_reported_once_with_its_outcome(world):
    assert world.post(issue("OPS-404")) == "IGNORED"
    foreign = hub_signature("another-secret-9876543210", issue("OPS-1"))
    for call, error in (
        (lambda: world.post(b"x" * 5000), PayloadTooLarge),
        (lambda: world.post(issue("OPS-1"), foreign), Unauthenticated),
        (lambda: world.post(issue("OPS-1"), hook_id="no-such-hook"), Unauthenticated),
        (lambda: world.post(issue("OPS-1"), signature=""), Unauthenticated),
        (lambda: world.post(b"not json"), InvalidArgument),
    ):
        with pytest.raises(error):
            call()
    assert world.seen == [
        ("JIRA", "IGNORED"),
        ("JIRA", "TOO_LARGE"),
        ("JIRA", "BAD_SIGNATURE"),
        ("JIRA", "UNKNOWN_HOOK"),
        ("JIRA", "BAD_SIGNATURE"),
        ("JIRA", "INVALID"),
    ]


def test_a_secret_sealed_with_another_key_is_reported_as_unreadable(world):
    # Another process whose key cannot open what this one sealed (a lost TARGET_SECRETS_KEY).
    world.hooks = world.service(TargetService(world.uow, FakeCipher(), UrlCheck(), world.clock))
    with pytest.raises(Unauthenticated):
        world.post(issue("OPS-1"))
    assert world.seen == [("JIRA", "SECRET_UNREADABLE")]
