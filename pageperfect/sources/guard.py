"""The address guard: keeps crawls away from loopback, private and cloud-metadata addresses.

Three layers, each cheap:
- `validate_url` checks the URL's syntax (http/https only, sane host, length) and
  refuses literal IP hosts that point inside the network.
- `resolve_checked` resolves a host name and refuses it if any address it resolves
  to is not public.
- `GuardedTransport` makes httpx connect to the address `resolve_checked` approved,
  so a DNS answer that changes between the check and the connect (DNS rebinding)
  cannot slip through. The Host header and TLS (SNI and certificate checks) still
  use the host name from the URL.

`PAGEPERFECT_ALLOWED_HOSTS` (parsed by `parse_allowed_hosts`) opens the guard for
named hosts, addresses or networks, e.g. a loopback demo site.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx
import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_HOSTS_SETTING = "PAGEPERFECT_ALLOWED_HOSTS"
MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Instance metadata services hand out cloud credentials: AWS/GCP/Azure/Oracle,
# AWS over IPv6, AWS ECS task metadata, Alibaba Cloud.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200")
)
_SHARED_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_HOST_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")


class GuardError(Exception):
    """A URL the crawler must not fetch; `kind` names the reason for the job's error record."""

    kind = "GuardError"


class InvalidUrl(GuardError):
    kind = "InvalidUrl"


class BlockedAddress(GuardError):
    kind = "BlockedAddress"


def _allow_hint() -> str:
    return f"set {ALLOWED_HOSTS_SETTING} to allow it"


def _normalize_host_name(host: str) -> str:
    host = host.strip().strip("[]").rstrip(".").lower()
    if host and not host.isascii():
        host = idna.encode(host, uts46=True).decode("ascii")
    return host


@dataclass(frozen=True)
class AllowList:
    """Hosts, addresses and networks that the guard lets through."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    def allows_host(self, host: str) -> bool:
        return bool(self.hosts) and _normalize_host_name(host) in self.hosts

    def allows_ip(self, ip: str | IPAddress) -> bool:
        if not self.networks:
            return False
        address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        candidates = [address]
        # "127.0.0.1" in the list also covers its IPv4-mapped IPv6 spelling.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            candidates.append(address.ipv4_mapped)
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.networks
        )

    def __bool__(self) -> bool:
        return bool(self.hosts or self.networks)


def parse_allowed_hosts(value: str | None) -> AllowList:
    """Parse "localhost,127.0.0.1,10.0.0.0/8,::1" into an AllowList; raises ValueError on a bad entry."""
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for raw_entry in (value or "").split(","):
        entry = raw_entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        if "/" in entry or ":" in entry:
            raise ValueError(f"{ALLOWED_HOSTS_SETTING}: {entry!r} is not a valid address or network")
        try:
            name = _normalize_host_name(entry)
        except idna.IDNAError as exc:
            raise ValueError(f"{ALLOWED_HOSTS_SETTING}: {entry!r} is not a valid host name ({exc})") from exc
        if not _is_valid_host_name(name):
            raise ValueError(f"{ALLOWED_HOSTS_SETTING}: {entry!r} is not a valid host name")
        hosts.add(name)
    return AllowList(hosts=frozenset(hosts), networks=tuple(networks))


def why_blocked(ip: str | IPAddress) -> str | None:
    """Why the crawler must not connect to `ip` ("a private address", ...), or None if it is public."""
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"

    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 spellings that carry an IPv4 address are judged by that address,
        # since that is where the packets end up.
        if address.ipv4_mapped is not None:
            inner = why_blocked(address.ipv4_mapped)
            return f"an IPv4-mapped form of {address.ipv4_mapped}, {inner}" if inner else None
        if address in _NAT64_PREFIX:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            inner = why_blocked(embedded)
            return f"a NAT64 form of {embedded}, {inner}" if inner else None
        if address.sixtofour is not None:
            inner = why_blocked(address.sixtofour)
            if inner:
                return f"a 6to4 form of {address.sixtofour}, {inner}"
        if address.teredo is not None:
            server, client = address.teredo
            for embedded in (client, server):
                inner = why_blocked(embedded)
                if inner:
                    return f"a Teredo form of {embedded}, {inner}"
        if address in _IPV4_COMPATIBLE and int(address) > 1:
            return "a deprecated IPv4-compatible address"

    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED_CGNAT:
        return "a shared (carrier-grade NAT) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
    return None


def _is_valid_host_name(host: str) -> bool:
    host = host.rstrip(".")
    if not host or len(host) > 253:
        return False
    return all(_HOST_LABEL.match(label) for label in host.split("."))


def _ends_in_number(host: str) -> bool:
    # The URL standard reads such hosts as IPv4 addresses, whatever their spelling.
    last_label = host.rstrip(".").rsplit(".", 1)[-1]
    return bool(_NUMERIC_LABEL.match(last_label))


def validate_url(url: str, allow: AllowList) -> str:
    """Check a URL's syntax and return it normalized (lower-case host, punycode, no fragment, no default port).

    Raises InvalidUrl for anything that is not a plain http(s) URL with a proper
    host, and BlockedAddress when the host is a literal IP that is not public
    (host names are checked later, when they are resolved).
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidUrl("the URL is empty")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidUrl(f"the URL is {len(url)} characters long; the limit is {MAX_URL_LENGTH}")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise InvalidUrl(f"{url!r} contains whitespace or control characters; percent-encode them (%20)")

    scheme_match = _SCHEME.match(url)
    if not scheme_match:
        raise InvalidUrl(f"{url!r} has no scheme; write it as https://example.com/page")
    scheme = scheme_match.group(1).lower()
    if scheme not in ALLOWED_SCHEMES:
        raise InvalidUrl(f"{url!r} uses the {scheme}: scheme; only http and https pages can be crawled")

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, idna.IDNAError, UnicodeError) as exc:
        raise InvalidUrl(f"{url!r} is not a valid URL: {exc}") from exc

    try:
        host = parsed.raw_host.decode("ascii").lower()
    except UnicodeDecodeError as exc:
        raise InvalidUrl(f"{url!r} has a host that cannot be encoded") from exc
    if not host:
        raise InvalidUrl(f"{url!r} has no host")
    if parsed.userinfo:
        # Credentials would end up in logs, the database and workflow history.
        raise InvalidUrl(f"{url!r} contains a user name or password; remove them")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InvalidUrl(f"{url!r} has an invalid port {parsed.port}")

    literal_ip: IPAddress | None = None
    if ":" in host:
        if "%" in host:
            raise InvalidUrl(f"{url!r} has an IPv6 zone id; zone ids are not allowed")
        try:
            literal_ip = ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise InvalidUrl(f"{url!r} has an invalid IPv6 host") from exc
    elif _ends_in_number(host):
        try:
            literal_ip = ipaddress.IPv4Address(host.rstrip("."))
        except ValueError as exc:
            raise InvalidUrl(
                f"{url!r} has a host that is not a standard IPv4 address (decimal, octal and hex "
                "forms are refused); write it as four decimal numbers, like 93.184.215.14"
            ) from exc
    elif not _is_valid_host_name(host):
        raise InvalidUrl(f"{url!r} has an invalid host name {host!r}")

    if literal_ip is not None:
        reason = why_blocked(literal_ip)
        if reason and not allow.allows_ip(literal_ip) and not allow.allows_host(host):
            raise BlockedAddress(f"{url} points to {literal_ip}, {reason}; {_allow_hint()}")

    if parsed.port == _DEFAULT_PORTS[scheme]:
        parsed = parsed.copy_with(port=None)
    # Rebuilt from parts so that the path always starts with "/" and the fragment is gone.
    result = f"{scheme}://{parsed.netloc.decode('ascii')}{parsed.raw_path.decode('ascii')}"
    if len(result) > MAX_URL_LENGTH:
        raise InvalidUrl(f"the URL is {len(result)} characters long once encoded; the limit is {MAX_URL_LENGTH}")
    return result


async def resolve_checked(host: str, port: int, allow: AllowList) -> list[str]:
    """Resolve `host` and return its addresses, all of them public or allowed.

    Raises BlockedAddress if any address is not public (a host that resolves to one
    public and one private address is refused: either could be used), unless the
    host name or that address is on the allow list. Resolution failures propagate
    as socket.gaierror.
    """
    bare_host = host.strip("[]")
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(bare_host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} did not resolve to any address")
    if allow.allows_host(bare_host):
        return addresses
    for address in addresses:
        reason = why_blocked(address)
        if reason and not allow.allows_ip(address):
            if address == bare_host:
                message = f"{host} is {reason}; {_allow_hint()}"
            else:
                message = f"{host} resolves to {address}, {reason}; {_allow_hint()}"
            raise BlockedAddress(message)
    return addresses


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves and checks every host before connecting, then connects to the checked address itself."""

    def __init__(self, allow: AllowList, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._allow = allow
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve_checked(host, port, self._allow)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"could not resolve {host}: {exc}") from exc

        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress("unix sockets are never crawled")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose every connection goes through GuardedNetworkBackend.

    No proxy support on purpose: a proxy would resolve the host itself, past the guard.
    """

    def __init__(
        self,
        allow: AllowList,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = httpx.Limits(max_connections=50, max_keepalive_connections=10),
        http2: bool = False,
        inner_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False, limits=limits, http2=http2)
        # httpx does not take a network backend, so the pool is rebuilt with one.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            network_backend=GuardedNetworkBackend(allow, inner_backend),
        )


def guarded_client(allow: AllowList, *, timeout: httpx.Timeout, user_agent: str) -> httpx.AsyncClient:
    """An AsyncClient that only reaches public (or allowed) addresses and never follows redirects.

    Callers follow redirects themselves so that every hop goes through validate_url.
    """
    return httpx.AsyncClient(
        transport=GuardedTransport(allow),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": user_agent},
    )


_EVERYWHERE = AllowList(networks=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")))


def normalize_url(url: str) -> str:
    """The URL as validate_url writes it, without the address check: for matching stored rows to pages."""
    return validate_url(url, _EVERYWHERE)
