"""Idempotency keys (API.md §5): the key format, the fingerprint, and what a repeat of a key means.

Plain rules only; storage/idempotency.py applies them to the stored rows and the rpc interceptor
applies them to calls.
"""

from __future__ import annotations

import enum
import hashlib
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from server.domain.errors import Conflict, FailedPrecondition, FieldViolation, InvalidArgument

# The field an invalid key's error names (the header; Idempotency-Key is read when it is absent).
KEY_HEADER = "X-Idempotency-Key"
ALTERNATIVE_HEADER = "Idempotency-Key"
_KEY_RULE = "must be 1-255 characters of A-Z, a-z, 0-9, ':', '_' and '-'"
KEY_PATTERN = r"[A-Za-z0-9:_-]{1,255}"
_KEY = re.compile(KEY_PATTERN)


class KeyState(enum.Enum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


@dataclass(frozen=True)
class KeyScope:
    """A key means something only within one tenant and one RPC."""

    tenant_id: str
    rpc: str
    key: str


@dataclass(frozen=True)
class Policy:
    ttl: timedelta  # how long a completed response is replayed
    lock_timeout: timedelta  # after this, an unfinished claim counts as abandoned

    def __post_init__(self) -> None:
        if self.ttl <= timedelta(0) or self.lock_timeout <= timedelta(0):
            raise ValueError("the idempotency TTL and lock timeout must be positive")

    @classmethod
    def of_seconds(cls, ttl: float, lock_timeout: float) -> Policy:
        return cls(timedelta(seconds=ttl), timedelta(seconds=lock_timeout))

    def claim_expiry(self, now: datetime) -> datetime:
        # A claim nobody completes or retries is purged like a completed key, but never while it
        # could still be running.
        return now + max(self.ttl, self.lock_timeout)


@dataclass(frozen=True)
class KeyRecord:
    """A stored key. `locked_at` is the claim's identity: completing or releasing a claim compares
    it, so an attempt whose claim was taken over cannot touch the new owner's row."""

    scope: KeyScope
    fingerprint: str
    state: KeyState
    locked_at: datetime
    expires_at: datetime | None
    response: bytes | None = None
    response_type: str | None = None


@dataclass(frozen=True)
class Claim:
    """This attempt owns the key: run the call, then complete or release."""

    scope: KeyScope
    locked_at: datetime


@dataclass(frozen=True)
class StoredResponse:
    """The key completed earlier with the same request: answer this, run nothing."""

    response: bytes
    response_type: str  # full proto name of the serialized message


class KeyStore(Protocol):
    """What the idempotency interceptor needs from storage (storage/idempotency.py)."""

    def claim(self, scope: KeyScope, fingerprint: str, now: datetime) -> Claim | StoredResponse:
        """Raises KeyInUse or KeyReused (see decide)."""
        ...

    def transaction(self) -> AbstractContextManager[Any]:
        """The call's transaction; open it after claim()."""
        ...

    def complete(self, tx: Any, claim: Claim, response: bytes, response_type: str, now: datetime) -> None:
        """Stores the response inside tx; raises KeyInUse if the claim was lost meanwhile."""
        ...

    def release(self, claim: Claim) -> bool: ...


class KeyInUse(Conflict):
    def __init__(self, message: str = "a request with this idempotency key is still in progress") -> None:
        super().__init__(message, reason="IDEMPOTENCY_KEY_IN_USE")


class KeyReused(FailedPrecondition):
    def __init__(self) -> None:
        super().__init__(
            "this idempotency key was already used with a different request", reason="IDEMPOTENCY_KEY_REUSED"
        )


def _invalid_key(description: str) -> InvalidArgument:
    return InvalidArgument(
        f"{KEY_HEADER}: {description}",
        reason="INVALID_IDEMPOTENCY_KEY",
        violations=(FieldViolation(KEY_HEADER, description),),
    )


def parse_key(primary: str | None, alternative: str | None, *, required: bool = False) -> str | None:
    """The key from X-Idempotency-Key, or Idempotency-Key when the first is absent; None = no key.

    A header that is present but empty is a malformed key, not an absent one: the caller meant to
    send a key, and running the call unprotected would hide that bug.
    """
    if primary is not None and alternative is not None and not _KEY.fullmatch(alternative):
        # Both sent: X-Idempotency-Key is the key, but a malformed second one is still the caller's
        # bug, refused as when it is the only one (the OpenAPI document states one pattern for both).
        raise InvalidArgument(
            f"{ALTERNATIVE_HEADER}: {_KEY_RULE}",
            reason="INVALID_IDEMPOTENCY_KEY",
            violations=(FieldViolation(ALTERNATIVE_HEADER, _KEY_RULE),),
        )
    raw = primary if primary is not None else alternative
    if raw is None:
        if required:
            raise _invalid_key("is required on this route")
        return None
    if not _KEY.fullmatch(raw):  # fullmatch: `$` would let a trailing newline through
        raise _invalid_key(_KEY_RULE)
    return raw


def fingerprint(canonical_request: bytes) -> str:
    """sha256 hex of the request's canonical bytes (the rpc layer's deterministic serialization of
    the request message, so both JSON spellings of one body give one fingerprint)."""
    return hashlib.sha256(canonical_request).hexdigest()


class Decision(enum.Enum):
    REPLAY = "replay"  # completed with the same request: answer the stored response
    TAKE_OVER = "take_over"  # expired, or abandoned mid-flight: the key is free again


def decide(existing: KeyRecord, fingerprint_: str, now: datetime, policy: Policy) -> Decision:
    """What a new request with this fingerprint does about a key that is already stored.

    Raises KeyInUse (409) while another attempt holds a live claim, KeyReused (422) when the key
    belongs to a different request. A different request is refused even while the first still runs:
    retrying will not fix it.
    """
    if existing.expires_at is not None and existing.expires_at <= now:
        return Decision.TAKE_OVER  # an expired key behaves as new, purged or not
    if existing.state is KeyState.IN_PROGRESS and now - existing.locked_at >= policy.lock_timeout:
        return Decision.TAKE_OVER  # the attempt died mid-flight; its claim frees the key
    if existing.fingerprint != fingerprint_:
        raise KeyReused()
    if existing.state is KeyState.IN_PROGRESS:
        raise KeyInUse()
    return Decision.REPLAY
