"""Errors with stable reasons. The rpc layer maps each kind to a gRPC code and an HTTP status."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorKind(enum.Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"  # a concurrent request holds the resource (409)
    FAILED_PRECONDITION = "FAILED_PRECONDITION"  # a business rule refuses the request (422)
    RATE_LIMITED = "RATE_LIMITED"
    TARGET_UNAVAILABLE = "TARGET_UNAVAILABLE"  # an external system failed (502)
    UNAVAILABLE = "UNAVAILABLE"  # our own dependency (the database) is down (503)
    INTERNAL = "INTERNAL"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"  # a body above a route's own limit (413)


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    """Raised by domain and services; `message` is safe to show to callers."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: tuple[FieldViolation, ...] = (),
        retry_after_seconds: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.kind.value
        self.violations = violations
        self.retry_after_seconds = retry_after_seconds


class InvalidArgument(DomainError):
    kind = ErrorKind.INVALID_ARGUMENT

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls(f"{field}: {description}", violations=(FieldViolation(field, description),))


class PayloadTooLarge(DomainError):
    kind = ErrorKind.PAYLOAD_TOO_LARGE


class Unauthenticated(DomainError):
    kind = ErrorKind.UNAUTHENTICATED


class PermissionDenied(DomainError):
    kind = ErrorKind.PERMISSION_DENIED


class NotFound(DomainError):
    kind = ErrorKind.NOT_FOUND


class Conflict(DomainError):
    kind = ErrorKind.CONFLICT


class FailedPrecondition(DomainError):
    kind = ErrorKind.FAILED_PRECONDITION


class RateLimited(DomainError):
    kind = ErrorKind.RATE_LIMITED


class TargetUnavailable(DomainError):
    kind = ErrorKind.TARGET_UNAVAILABLE


class Unavailable(DomainError):
    kind = ErrorKind.UNAVAILABLE


class Violations:
    """Collects every field problem of one request so the caller sees them all at once."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._items.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if not self._items:
            return
        first = self._items[0]
        more = f" (and {len(self._items) - 1} more)" if len(self._items) > 1 else ""
        raise InvalidArgument(f"{first.field}: {first.description}{more}", violations=tuple(self._items))
