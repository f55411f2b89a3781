"""The memory of authenticated tokens (server/services/principal_cache.py), on a fake clock."""

from server.domain.auth import Principal
from server.services.principal_cache import PrincipalCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def principal(token_id: str = "tok-1") -> Principal:
    return Principal("tenant-a", token_id, frozenset({"exceptions:read"}))


def test_an_entry_lives_for_its_ttl_and_no_longer():
    clock = Clock()
    cache = PrincipalCache(5, clock=clock)
    cache.put("hash-1", principal())
    clock.now += 4.99
    assert cache.get("hash-1") == principal()
    clock.now += 0.01
    assert cache.get("hash-1") is None
    assert cache.get("hash-2") is None


def test_ttl_zero_keeps_nothing():
    cache = PrincipalCache(0)
    cache.put("hash-1", principal())
    assert not cache.enabled
    assert cache.get("hash-1") is None


def test_forget_token_drops_every_entry_of_that_token_only():
    cache = PrincipalCache(60)
    cache.put("hash-1", principal("tok-1"))
    cache.put("hash-2", principal("tok-2"))
    cache.forget_token("tok-1")
    assert cache.get("hash-1") is None
    assert cache.get("hash-2") == principal("tok-2")


def test_a_full_cache_drops_expired_entries_then_the_oldest():
    clock = Clock()
    cache = PrincipalCache(10, max_entries=4, clock=clock)
    cache.put("old", principal("old"))
    clock.now += 11  # "old" has expired
    for name in ("a", "b", "c"):
        cache.put(name, principal(name))
    cache.put("d", principal("d"))  # full: the expired entry goes, the live ones stay
    assert [cache.get(n) is not None for n in ("old", "a", "b", "c", "d")] == [False, True, True, True, True]
    cache.put("e", principal("e"))  # full of live entries: the oldest half goes
    assert [cache.get(n) is not None for n in ("a", "b", "c", "d", "e")] == [False, False, True, True, True]
