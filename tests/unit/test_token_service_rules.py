"""TokenService's rules over the in-memory fakes: only hashes are stored, scopes, revocation.
(tests/integration/storage/test_token_service.py covers the principal cache on a real database.)"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from server.domain.auth import SCOPES, Principal
from server.domain.errors import InvalidArgument, NotFound, Unauthenticated
from server.services.principal_cache import PrincipalCache
from server.services.tokens import NAME_MAX, TENANT_MAX, TokenService
from server.storage import tables
from server.storage.migrate import upgrade
from tests.unit.fakes import Clock, FakeUnitOfWorkFactory

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def uow() -> FakeUnitOfWorkFactory:
    return FakeUnitOfWorkFactory()


@pytest.fixture
def service(uow) -> TokenService:
    return TokenService(uow, Clock(NOW))


def test_only_the_sha256_of_a_token_is_stored(service, uow):
    token_id, token = service.create(" tenant-a ", ["exceptions:read"], "ci")
    assert token.startswith("rr_") and len(token) > 40
    (row,) = uow.rows.tokens.values()
    assert (row.id, row.tenant_id, row.name) == (token_id, "tenant-a", "ci")
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(row) and token[3:] not in repr(row)


def test_a_token_authenticates_as_its_tenant_with_its_scopes(service):
    token_id, token = service.create(
        "tenant-a", ["exceptions:read", "exceptions:dispatch", "exceptions:read"]
    )
    assert service.authenticate(token) == Principal(
        "tenant-a", token_id, frozenset({"exceptions:read", "exceptions:dispatch"})
    )
    other_id, other = service.create("tenant-b", list(SCOPES))
    assert service.authenticate(other) == Principal("tenant-b", other_id, frozenset(SCOPES))
    assert other != token and other_id != token_id
    with pytest.raises(Unauthenticated):
        service.authenticate(token + "x")


def test_unknown_scopes_and_bad_tenants_are_refused_and_nothing_is_stored(service, uow):
    with pytest.raises(InvalidArgument) as err:
        service.create("tenant-a", ["exceptions:read", "admin", "root"])
    assert (err.value.violations[0].field, "admin, root" in err.value.message) == ("scopes", True)
    for tenant in ("   ", "t" * 65):
        with pytest.raises(InvalidArgument) as err:
            service.create(tenant, ["exceptions:read"])
        assert err.value.violations[0].field == "tenant"
    assert service.count() == 0 and uow.db.commits == 0


def test_names_and_tenants_longer_than_their_columns_are_refused(service, uow):
    with pytest.raises(InvalidArgument) as err:
        service.create("tenant-a", ["exceptions:read"], "n" * 256)
    assert err.value.violations[0].field == "name" and err.value.message.startswith("name: ")
    assert service.count() == 0
    service.create(" " + "t" * 64 + " ", ["exceptions:read"], "n" * 255)  # the stored tenant fits
    assert [(len(r.tenant_id), len(r.name)) for r in uow.rows.tokens.values()] == [(64, 255)]


def test_the_length_limits_are_the_columns_widths():
    assert (tables.tokens.c.tenant_id.type.length, tables.tokens.c.name.type.length) == (TENANT_MAX, NAME_MAX)


def test_the_cli_prints_a_too_long_name_as_an_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    env = {**os.environ, "DATABASE_URL": url, "TARGET_SECRETS_KEY_FILE": str(tmp_path / "key")}
    result = subprocess.run(
        [sys.executable, "-m", "server", "tokens", "create", "--tenant", "t", "--name", "n" * 256],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "error: name: must be at most 255 characters\n",
    )


def test_a_revoked_token_is_refused_and_cannot_be_revoked_again(service, uow):
    token_id, token = service.create("tenant-a", ["exceptions:read"])
    keep_id, keep = service.create("tenant-a", ["exceptions:read"])
    service.revoke(token_id)
    assert uow.rows.tokens[token_id].revoked_at == NOW
    with pytest.raises(Unauthenticated):
        service.authenticate(token)
    with pytest.raises(NotFound):
        service.revoke(token_id)
    with pytest.raises(NotFound):
        service.revoke("no-such-token")
    assert service.authenticate(keep).token_id == keep_id
    assert service.count() == 2  # revoked tokens stay on record


def test_revoking_through_the_service_forgets_its_cached_principal(uow):
    service = TokenService(uow, Clock(NOW), PrincipalCache(60))
    token_id, token = service.create("tenant-a", ["exceptions:read"])
    service.authenticate(token)
    service.revoke(token_id)
    with pytest.raises(Unauthenticated):
        service.authenticate(token)
