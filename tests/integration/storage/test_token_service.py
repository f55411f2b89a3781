"""TokenService on a real database: lookups, the principal cache, and revocation."""

import pytest

from server.domain.errors import Unauthenticated
from server.services.principal_cache import PrincipalCache
from server.services.tokens import TokenService


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_without_a_cache_a_revocation_anywhere_is_seen_on_the_next_call(uow):
    service, elsewhere = TokenService(uow), TokenService(uow)
    token_id, token = service.create("tenant-a", ["exceptions:read"])
    assert service.authenticate(token).tenant_id == "tenant-a"
    elsewhere.revoke(token_id)
    with pytest.raises(Unauthenticated):
        service.authenticate(token)


def test_a_cached_token_is_not_looked_up_again_until_it_expires(uow):
    clock = Clock()
    service = TokenService(uow, cache=PrincipalCache(5, clock=clock))
    elsewhere = TokenService(uow)  # say, the CLI or another replica
    token_id, token = service.create("tenant-a", ["exceptions:read", "exceptions:write"])
    first = service.authenticate(token)
    assert (first.tenant_id, first.token_id, first.scopes) == (
        "tenant-a",
        token_id,
        frozenset({"exceptions:read", "exceptions:write"}),
    )
    elsewhere.revoke(token_id)
    clock.now = 4.9
    assert service.authenticate(token) == first  # the documented window (AUTH_CACHE_SECONDS)
    clock.now = 5.0
    with pytest.raises(Unauthenticated):
        service.authenticate(token)


def test_revoking_through_the_same_service_takes_effect_at_once(uow):
    service = TokenService(uow, cache=PrincipalCache(60))
    token_id, token = service.create("tenant-a", ["exceptions:read"])
    service.authenticate(token)
    service.revoke(token_id)
    with pytest.raises(Unauthenticated):
        service.authenticate(token)


def test_unknown_tokens_are_never_cached(uow):
    service = TokenService(uow, cache=PrincipalCache(60))
    with pytest.raises(Unauthenticated):
        service.authenticate("rr_not-a-token")
    token_id, token = service.create("tenant-a", ["exceptions:read"])
    service.revoke(token_id)
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            service.authenticate(token)
