"""The SSRF guard: target URLs must be https and reach public addresses only.

Checked twice (API.md §3): when a tenant configures a target (`check_url`), and on every connection
the HTTP client opens (`GuardedBackend`). The second check is the one that matters: DNS can answer
differently later (rebinding), and it covers every request the client makes. The backend resolves
the name itself, refuses the whole name if any address is not public, and connects to the address
it checked, so nothing can swap the address between the check and the connect. TLS still verifies
the certificate against the host name (httpcore passes the name, not the address, to the TLS layer).

DISPATCH_ALLOW_PRIVATE_NETWORKS=true turns both checks off and allows plain http (tests, local trials).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import httpcore

from server.connectors.deadline import DeadlineStream, clamp

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(Exception):
    """A connection to a non-public address was refused; nothing was sent. The message names no host
    (it may reach callers)."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """IPv6 forms that carry an IPv4 address a host may end up connecting to."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: Address) -> bool:
    """Globally routable unicast: not loopback, private, link-local (169.254.169.254, the cloud
    metadata service), shared (100.64/10), reserved, multicast or unspecified."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public(inner):
            return False
    return ip.is_global and not ip.is_multicast


class AddressPolicy:
    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        self.allow_private = allow_private
        self._resolve = resolver

    def check_url(self, url: str) -> str | None:
        """Configuration time: None when the URL may be used, else why not (a field violation)."""
        if self.allow_private:
            return None
        parts = urlsplit(url)
        if parts.scheme != "https":
            return "must use https"
        try:
            self.addresses(parts.hostname or "", parts.port or 443)
        except AddressRefused:
            return "must resolve to public addresses only"
        except OSError:
            return "has a host name that does not resolve"
        return None

    def addresses(self, host: str, port: int) -> list[str]:
        """Connect time: the addresses to connect to, all of them checked; raises AddressRefused."""
        found = self._resolve(host, port)
        if not found:
            raise OSError("no address")
        if not self.allow_private:
            for raw in found:
                if not is_public(ipaddress.ip_address(raw.split("%", 1)[0])):
                    raise AddressRefused("the target's address is not public")
        return found


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend with the policy applied to every TCP connection."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._policy.addresses(host, port)
        except OSError as exc:
            raise httpcore.ConnectError("name resolution failed") from exc
        last: Exception | None = None
        for address in addresses:  # like socket.create_connection: the first that answers
            try:
                stream = self._inner.connect_tcp(
                    address, port, clamp(timeout, httpcore.ConnectTimeout), local_address, socket_options
                )
                # Every later read and write is held to the attempt's deadline too (deadline.py).
                return DeadlineStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise AddressRefused("unix sockets are not targets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
