"""Retries (tenacity) and per-host circuit breakers around calls to target systems.

An attempt is one try at an operation (which may be more than one HTTP request, e.g. JIRA's "look
for the ticket, then create it"). It returns, or raises:
- Transient: another attempt may succeed (network errors, timeouts, 429, 5xx). Retried with
  exponential backoff and jitter, or after the target's Retry-After when it sends one; a Retry-After
  longer than the longest allowed wait ends the retries at once rather than being cut short.
- anything else (Rejected, AddressRefused): final, not retried.
Every attempt goes through the host's breaker; only Transient failures count towards opening it,
and an open breaker fails calls at once without contacting the host (CircuitOpen).

The breaker is written here rather than taken from pybreaker: pybreaker's CircuitBreaker.call holds
the breaker's lock for the whole guarded call, so every call to one host ran one at a time, and the
pooled bulk dispatch measured no faster than the sequential one (bench/dispatch.py). This one locks
only to read and update its state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

T = TypeVar("T")


class Transient(Exception):
    def __init__(
        self,
        reason: str,
        *,
        maybe_created: bool,
        retry_after: float | None = None,
        status: int | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_created = maybe_created
        self.retry_after = retry_after
        self.status = status  # the HTTP status, when the target answered
        self.timed_out = timed_out


class Rejected(Exception):
    """The target answered and refused; `detail` is the target's own short explanation."""

    def __init__(self, status: int, detail: str, body: object = None) -> None:
        super().__init__(f"{status} {detail}".strip())
        self.status = status
        self.detail = detail
        self.body = body  # the parsed JSON answer, for targets that put per-item results in it


class Unavailable(Exception):
    """The operation failed after every attempt it was allowed; `last` is the final Transient
    failure (None when the circuit was open and nothing was sent)."""

    def __init__(self, reason: str, *, maybe_created: bool, last: Transient | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_created = maybe_created
        self.last = last


@dataclass
class AttemptState:
    number: int = 0
    # An earlier attempt reached the target and lost the answer: the ticket may exist already.
    maybe_created: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 10.0


class CircuitOpen(Exception):
    pass


class Breaker:
    """closed -> open after fail_max consecutive Transient failures -> after reset_seconds, half-open:
    one trial call goes through (the others still fail fast); its success closes the circuit, its
    failure opens it again. Answers that are not Transient (a 4xx) prove the host is up and count as
    successes; a call refused before sending (SSRF guard) changes nothing."""

    def __init__(
        self, fail_max: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.fail_max = fail_max
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def open(self) -> bool:
        with self._lock:
            return self._opened_at is not None

    def call(self, fn: Callable[..., T], *args: object) -> T:
        trial = self._enter()
        try:
            result = fn(*args)
        except Transient:
            self._record(failed=True, trial=trial)
            raise
        except (Rejected, Unavailable):
            self._record(failed=False, trial=trial)
            raise
        except BaseException:
            self._leave(trial)
            raise
        self._record(failed=False, trial=trial)
        return result

    def _enter(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return False
            if self._trial or self._clock() - self._opened_at < self.reset_seconds:
                raise CircuitOpen()
            self._trial = True  # half-open: this call is the trial
            return True

    def _record(self, *, failed: bool, trial: bool) -> None:
        with self._lock:
            if trial:
                self._trial = False
            if not failed:
                self._failures, self._opened_at = 0, None
                return
            self._failures += 1
            if trial or self._failures >= self.fail_max:
                self._opened_at = self._clock()

    def _leave(self, trial: bool) -> None:
        with self._lock:
            if trial:
                self._trial = False


class Breakers:
    """One circuit breaker per key: a tenant's target system (connectors name it), so one tenant's
    failing configuration never stops another tenant's deliveries to the same host."""

    def __init__(self, fail_max: int, reset_seconds: float) -> None:
        self._fail_max = fail_max
        self._reset = reset_seconds
        self._lock = threading.Lock()
        self._by_host: dict[str, Breaker] = {}

    def for_host(self, host: str) -> Breaker:
        with self._lock:
            breaker = self._by_host.get(host)
            if breaker is None:
                breaker = self._by_host[host] = Breaker(self._fail_max, self._reset)
            return breaker


class Resilience:
    def __init__(
        self, policy: RetryPolicy, breakers: Breakers, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.policy = policy
        self.breakers = breakers
        self._sleep = sleep
        self._backoff = tenacity.wait_exponential_jitter(
            multiplier=policy.backoff_initial, max=policy.backoff_max, jitter=policy.backoff_initial
        )

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, Transient) and exc.retry_after is not None:
            return exc.retry_after
        return self._backoff(retry_state)

    def _worth_retrying(self, exc: BaseException) -> bool:
        if not isinstance(exc, Transient):
            return False
        return exc.retry_after is None or exc.retry_after <= self.policy.backoff_max

    def run(self, breaker_key: str, attempt: Callable[[AttemptState], T]) -> T:
        """Returns what an attempt returned; raises Unavailable, or the attempt's final error."""
        breaker = self.breakers.for_host(breaker_key)
        state = AttemptState()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self._worth_retrying),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            for retry in retrying:
                with retry:
                    state.number = retry.retry_state.attempt_number
                    try:
                        return breaker.call(attempt, state)
                    except Transient as exc:
                        state.maybe_created = state.maybe_created or exc.maybe_created
                        raise
        except Transient as exc:
            raise Unavailable(
                self._exhausted(exc, state.number), maybe_created=state.maybe_created, last=exc
            ) from exc
        except CircuitOpen:
            raise Unavailable(
                "circuit open after repeated failures; not called", maybe_created=state.maybe_created
            ) from None
        raise AssertionError("unreachable: tenacity either returned or raised")

    def _exhausted(self, exc: Transient, attempts: int) -> str:
        if self.policy.max_attempts == 1:
            return exc.reason  # one request per attempt: the delivery workers count attempts
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if exc.retry_after is not None and exc.retry_after > self.policy.backoff_max:
            return f"{exc.reason}, asking to retry after {exc.retry_after:.0f} s ({tries})"
        return f"{exc.reason} ({tries})"
