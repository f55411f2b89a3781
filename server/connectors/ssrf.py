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

# The IANA IPv4 and IPv6 Special-Purpose Address Registries (iana.org/assignments/iana-ipv4-special-
# registry, iana-ipv6-special-registry), every entry with its "Globally Reachable" column. The most
# specific entry containing an address decides (192.0.0.9, PCP anycast, is reachable inside the
# unreachable 192.0.0.0/24). Python's `is_global` follows an older copy that differs by version
# (3.11 lets 3fff::/20 and 5f00::/16 through), so the table is ours. Multicast and the IPv4 limited
# broadcast are never targets; IPv6 outside 2000::/3 (global unicast) is unassigned or special.
SPECIAL_PURPOSE: tuple[tuple[str, bool], ...] = (
    # IPv4
    ("0.0.0.0/8", False),  # "this network"
    ("10.0.0.0/8", False),  # private use
    ("100.64.0.0/10", False),  # shared address space (carrier-grade NAT)
    ("127.0.0.0/8", False),  # loopback
    ("169.254.0.0/16", False),  # link local (cloud metadata services)
    ("172.16.0.0/12", False),  # private use
    ("192.0.0.0/24", False),  # IETF protocol assignments
    ("192.0.0.0/29", False),  # DS-Lite
    ("192.0.0.8/32", False),  # IPv4 dummy address
    ("192.0.0.9/32", True),  # port control protocol anycast
    ("192.0.0.10/32", True),  # TURN anycast
    ("192.0.0.170/31", False),  # NAT64/DNS64 discovery
    ("192.0.2.0/24", False),  # documentation (TEST-NET-1)
    ("192.31.196.0/24", True),  # AS112-v4
    ("192.52.193.0/24", True),  # AMT
    ("192.88.99.0/24", False),  # deprecated 6to4 relay anycast
    ("192.168.0.0/16", False),  # private use
    ("192.175.48.0/24", True),  # direct delegation AS112 service
    ("198.18.0.0/15", False),  # benchmarking
    ("198.51.100.0/24", False),  # documentation (TEST-NET-2)
    ("203.0.113.0/24", False),  # documentation (TEST-NET-3)
    ("224.0.0.0/4", False),  # multicast (its own registry)
    ("240.0.0.0/4", False),  # reserved
    ("255.255.255.255/32", False),  # limited broadcast
    # IPv6
    ("::/128", False),  # unspecified
    ("::1/128", False),  # loopback
    ("::ffff:0:0/96", False),  # IPv4-mapped (the IPv4 address inside is checked too)
    ("64:ff9b::/96", True),  # IPv4/IPv6 translation (the IPv4 address inside is checked)
    ("64:ff9b:1::/48", False),  # local-use IPv4/IPv6 translation
    ("100::/64", False),  # discard-only
    ("100:0:0:1::/64", False),  # dummy IPv6 prefix
    ("2001::/23", False),  # IETF protocol assignments
    ("2001::/32", False),  # Teredo
    ("2001:1::1/128", True),  # port control protocol anycast
    ("2001:1::2/128", True),  # TURN anycast
    ("2001:1::3/128", True),  # DNS-SD service registration protocol anycast
    ("2001:2::/48", False),  # benchmarking
    ("2001:3::/32", True),  # AMT
    ("2001:4:112::/48", True),  # AS112-v6
    ("2001:10::/28", False),  # deprecated ORCHID
    ("2001:20::/28", True),  # ORCHIDv2
    ("2001:30::/28", True),  # drone remote ID entity tags
    ("2001:db8::/32", False),  # documentation
    ("2002::/16", True),  # 6to4 (the IPv4 address inside is checked)
    ("2620:4f:8000::/48", True),  # direct delegation AS112 service
    ("3fff::/20", False),  # documentation
    ("5f00::/16", False),  # segment routing (SRv6) SIDs
    ("fc00::/7", False),  # unique local
    ("fe80::/10", False),  # link-local unicast
    ("fec0::/10", False),  # site-local (deprecated)
    ("ff00::/8", False),  # multicast
)
_TABLE = sorted(
    ((ipaddress.ip_network(net), reachable) for net, reachable in SPECIAL_PURPOSE),
    key=lambda entry: entry[0].prefixlen,
    reverse=True,  # most specific first
)
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


class AddressRefused(Exception):
    """A connection to a non-public address was refused; nothing was sent. The message names no host
    (it may reach callers)."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (UnicodeError, ValueError) as exc:  # a label over 63 characters, a NUL: not a name at all
        raise OSError("not a resolvable host name") from exc
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
    """Globally reachable unicast by the IANA special-purpose registries (SPECIAL_PURPOSE): not
    loopback, private, link-local (169.254.169.254, the cloud metadata service), shared (100.64/10),
    documentation, benchmarking, reserved, multicast, unspecified; for IPv6 forms that carry an IPv4
    address, that address too."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return False
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public(inner):
            return False
        if (
            ip not in _GLOBAL_UNICAST_V6
            and ip not in _NAT64
            and not any(ip in net and reachable for net, reachable in _TABLE)
        ):
            return False
    for net, reachable in _TABLE:
        if ip.version == net.version and ip in net:
            return reachable
    return True


class AddressPolicy:
    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        self.allow_private = allow_private
        self._resolve = resolver

    def check_url(self, url: str) -> str | None:
        """Configuration time: None when the URL may be used, else why not (a field violation)."""
        if self.allow_private:
            return None
        try:
            parts = urlsplit(url)
            host, port = parts.hostname or "", parts.port or 443
        except ValueError:  # url_problem refuses these first; never a 500 if it did not
            return "is not a valid URL"
        if parts.scheme != "https":
            return "must use https"
        try:
            self.addresses(host, port)
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
