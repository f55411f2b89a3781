"""What the HTTP connectors share: one httpx client (connection pool, timeouts, the SSRF-guarded
transport, no redirects) and the translation of responses and network errors into attempt outcomes."""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpcore
import httpx

from server.connectors.resilience import AttemptState, Rejected, Resilience, Transient, Unavailable
from server.connectors.ssrf import AddressPolicy, AddressRefused, GuardedBackend
from server.domain.dispatch import TargetAddressRefused, TargetDown, TargetRejected, TargetSystem
from server.domain.errors import DomainError

T = TypeVar("T")
USER_AGENT = "reconrouter-dispatch/1"
MAX_DETAIL = 200


@dataclass(frozen=True)
class HttpSettings:
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    max_connections: int = 100


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with GuardedBackend under its connection pool (httpx 0.28 takes no backend
    argument, so the pool it built is replaced by an identical one with the backend)."""

    def __init__(self, policy: AddressPolicy, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )


def build_client(settings: HttpSettings, policy: AddressPolicy) -> httpx.Client:
    # httpx logs every request (with its URL) at INFO; target hosts stay out of the service's logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    limits = httpx.Limits(max_connections=settings.max_connections, max_keepalive_connections=20)
    timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout)
    return httpx.Client(
        transport=GuardedTransport(policy, limits),
        timeout=timeout,
        follow_redirects=False,  # a redirect could lead anywhere; it is reported instead
        headers={"User-Agent": USER_AGENT},
        trust_env=False,  # no proxies from the environment: the guard must see the real peer
    )


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def clean(text: str) -> str:
    """Target-supplied text fit for a one-line error sentence."""
    return " ".join(text.split())[:MAX_DETAIL]


class TargetHttp:
    """One per process: the client, the retry policy and the breakers for every tenant's targets."""

    def __init__(self, client: httpx.Client, resilience: Resilience) -> None:
        self.client = client
        self.resilience = resilience

    def close(self) -> None:
        self.client.close()

    def request(
        self,
        method: str,
        url: str,
        describe_error: Callable[[httpx.Response], str],
        **kwargs: Any,
    ) -> httpx.Response:
        """One HTTP request as one step of an attempt: a 2xx response, or Transient / Rejected /
        AddressRefused."""
        try:
            response = self.client.request(method, url, **kwargs)
        except AddressRefused:
            raise
        except (httpx.ConnectTimeout, httpx.PoolTimeout):
            raise Transient("timed out connecting", maybe_created=False, timed_out=True) from None
        except httpx.ConnectError:
            raise Transient("could not connect", maybe_created=False) from None
        except httpx.TimeoutException:
            raise Transient("timed out", maybe_created=method != "GET", timed_out=True) from None
        except httpx.TransportError:  # dropped connection, protocol error: the request may have landed
            raise Transient("connection dropped", maybe_created=method != "GET") from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if status in (429, 503, 425):  # throttled, overloaded or too early: not processed
            raise Transient(f"answered {status}", maybe_created=False, retry_after=retry_after, status=status)
        if status >= 500 or status in (408, 409):  # the request may have landed (409: it may exist)
            raise Transient(
                f"answered {status}", maybe_created=method != "GET", retry_after=retry_after, status=status
            )
        if 300 <= status < 400:
            raise Rejected(status, "redirected; check the configured URL")
        raise Rejected(status, clean(describe_error(response)), body=json_or_empty(response))

    def run(self, breaker_key: str, attempt: Callable[[AttemptState], T]) -> T:
        """One operation under the circuit breaker of `breaker_key` (a tenant's target system)."""
        return self.resilience.run(breaker_key, attempt)


def as_domain_error(target: TargetSystem, noun: str, exc: Exception) -> DomainError:
    """Short sentences for people (API.md §3): no stack traces, no host names."""
    name = target.value
    if isinstance(exc, Rejected):
        if exc.status == 401:
            return TargetRejected(
                f"{name} refused the credentials: {exc.status} {exc.detail}".strip(), http_status=exc.status
            )
        return TargetRejected(
            f"{name} rejected the {noun}: {exc.status} {exc.detail}".strip(), http_status=exc.status
        )
    if isinstance(exc, Unavailable):
        last = exc.last
        return TargetDown(
            f"{name} is unavailable: {exc.reason}",
            maybe_created=exc.maybe_created,
            timed_out=last is not None and last.timed_out,
            retry_after=last.retry_after if last is not None else None,
            http_status=last.status if last is not None else None,
        )
    if isinstance(exc, AddressRefused):
        return TargetAddressRefused(f"{name} is configured with an address that is not public; not called")
    raise exc


def json_or_empty(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}
