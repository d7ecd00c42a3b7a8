"""One outbound POST that cannot be steered into our own network. Django-free.

The host is resolved once, **every** answer is validated, and the connection goes to
the validated address only: the TCP connection is opened to that IP while the `Host`
header, the TLS SNI name and the name the certificate must carry stay the URL's host,
so a second DNS answer (rebinding) can never be used. Redirects are not followed and the
answer is read by streaming, up to a cap. The request itself is http.client's (a
fifth of httpx's CPU per request); httpx only parses URLs.
"""

from __future__ import annotations

import base64
import csv
import http.client
import ipaddress
import re
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import certifi
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to, in the resolver's order.
Resolver = Callable[[str, int], list[str]]

ALLOWED_SCHEMES = ("http", "https")
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
TEREDO = ipaddress.ip_network("2001::/32")
SHARED_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# IANA's IPv6 Address Space registry: global unicast is 2000::/3, the rest is reserved,
# unique-local, link-local, site-local (fec0::/10, deprecated) or multicast.
IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
REGISTRY_DIR = Path(__file__).parent / "iana"


@dataclass(frozen=True)
class SpecialBlock:
    """One row of an IANA special-purpose address registry (ipn/lib/iana/README.md)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    name: str
    globally_reachable: bool


def _cell(text: str) -> str:
    """A registry cell without its footnote marks (`False [1]` → `False`)."""
    return re.sub(r"\s*\[\d+\]", "", text).strip()


def read_registry(path: Path) -> list[SpecialBlock]:
    """The rows of one IANA special-purpose registry CSV (a cell may hold several blocks)."""
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    blocks = []
    for row in rows:
        for network in _cell(row["Address Block"]).split(","):
            blocks.append(
                SpecialBlock(
                    network=ipaddress.ip_network(network.strip()),
                    name=" ".join(row["Name"].split()),
                    globally_reachable=_cell(row["Globally Reachable"]) == "True",
                )
            )
    return blocks


# Every block that is not globally reachable: a callback to an address inside one is refused,
# even where a smaller block inside it is reachable (192.0.0.9 is in 192.0.0.0/24).
SPECIAL_PURPOSE = [
    block
    for name in ("iana-ipv4-special-registry-1.csv", "iana-ipv6-special-registry-1.csv")
    for block in read_registry(REGISTRY_DIR / name)
    if not block.globally_reachable
]


class DeliveryError(Exception):
    """A request that got no HTTP answer. `permanent` ones are not worth retrying."""

    permanent = False
    kind = "error"


class AddressRefused(DeliveryError):
    """The URL or one of its addresses is not allowed (scheme, private network…)."""

    permanent = True
    kind = "refused"


class ForbiddenAddress(AddressRefused):
    """The host is (or resolves to) a loopback, private, link-local… address: refused
    unless private networks are allowed."""


class Timeout(DeliveryError):
    kind = "timeout"


class ConnectionFailed(DeliveryError):
    kind = "connection"


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: http.client.HTTPMessage  # .get() ignores case
    # At most `max_response_bytes` of the body.
    body: bytes
    truncated: bool


def canonical_address(value: str) -> Address:
    """The address, with IPv4-mapped IPv6 turned into IPv4; raises ValueError."""
    address = ipaddress.ip_address(value.strip("[]").split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def refusal_reason(address: Address) -> str | None:
    """Why a callback may not go to this address, or None when it is a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return refusal_reason(address.ipv4_mapped)
        # Python calls these global, yet they route to an embedded IPv4 address.
        if address in NAT64_WELL_KNOWN:
            return refusal_reason(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            return refusal_reason(address.sixtofour)
        if address in NAT64_LOCAL_USE or address in TEREDO:
            return f"{address} is a translated address"
    if address.is_unspecified:
        return f"{address} is unspecified"
    if address.is_loopback:
        return f"{address} is loopback"
    if address.is_link_local:
        return f"{address} is link-local"
    if address.is_multicast:
        return f"{address} is multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in SHARED_CGNAT:
        return f"{address} is carrier-grade NAT space"
    if address.is_private:
        return f"{address} is private"
    # What Python's tables miss (they lag the registry: 192.0.0.9, 3fff::/20, fec0::/10, …).
    for block in SPECIAL_PURPOSE:
        if address.version == block.network.version and address in block.network:
            return f"{address} is in {block.network} ({block.name}, IANA special-purpose registry)"
    if isinstance(address, ipaddress.IPv6Address) and address not in IPV6_GLOBAL_UNICAST:
        return f"{address} is outside IPv6 global unicast space (2000::/3)"
    if address.is_reserved or not address.is_global:
        return f"{address} is reserved"
    return None


@lru_cache(maxsize=1024)  # one account's URL is parsed for every callback; a URL is immutable
def parse_url(url: str) -> httpx.URL:
    """The URL if its scheme is http/https and it has a host; raises AddressRefused."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise AddressRefused("not a valid URL")
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise AddressRefused("only http:// and https:// URLs are allowed")
    if not parsed.host:
        raise AddressRefused("the URL has no host")
    return parsed


def _literal_address(host: str) -> str | None:
    """The IP of a host written as an address, including legacy IPv4 forms that the C
    resolver accepts (``2130706433``, ``0x7f.1``, ``127.1``); None for a name."""
    try:
        return str(canonical_address(host))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (one lookup)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConnectionFailed(f"cannot resolve {host}: {exc}")
    seen: list[str] = []
    for info in infos:
        ip = str(info[4][0])
        if ip not in seen:
            seen.append(ip)
    return seen


def resolve_checked(url: httpx.URL, *, allow_private: bool, resolver: Resolver = system_resolver) -> Address:
    """Resolves the URL's host once and validates every answer; returns the address to
    connect to. Raises AddressRefused (permanent) or ConnectionFailed (no answer)."""
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    literal = _literal_address(host)
    answers = [literal] if literal else resolver(host, port)
    if not answers:
        raise ConnectionFailed(f"{host} has no address")
    addresses = []
    for answer in answers:
        try:
            address = canonical_address(answer)
        except ValueError:
            raise AddressRefused(f"{host} resolved to an invalid address")
        reason = None if allow_private else refusal_reason(address)
        if reason:
            # One bad answer refuses the host: a rebinding resolver may rotate them.
            raise ForbiddenAddress(f"{host} resolves to a forbidden address: {reason}")
        addresses.append(address)
    return addresses[0]


def check_url(url: str, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
    """Save-time check: raises AddressRefused for a bad scheme or a forbidden address.
    A name that does not resolve (yet) is accepted; send time checks again."""
    parsed = parse_url(url)
    try:
        resolve_checked(parsed, allow_private=allow_private, resolver=resolver)
    except ConnectionFailed:
        pass


@cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS over a TCP connection to the checked address, with the URL's host name as the
    SNI name and as the name the certificate must carry."""

    def __init__(self, address: str, port: int, *, server_name: str, timeout: float) -> None:
        self.tls = _tls_context()
        super().__init__(address, port, timeout=timeout, context=self.tls)
        self.server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.server_name)


# Headers only this module sets: the caller's mapping cannot add a second one.
_OWN_HEADERS = frozenset({"host", "accept-encoding", "content-length", "transfer-encoding", "connection"})


def post(
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout: float,
    max_response_bytes: int,
    allow_private: bool,
    resolver: Resolver = system_resolver,
) -> Answer:
    """POSTs content to url through the SSRF guard and returns the (capped) answer.

    Raises AddressRefused, Timeout or ConnectionFailed. 3xx answers are returned, not followed.
    """
    parsed = parse_url(url)
    address = resolve_checked(parsed, allow_private=allow_private, resolver=resolver)
    https = parsed.scheme == "https"
    host_header = parsed.netloc.decode("ascii").rsplit("@", 1)[-1]
    key = (parsed.scheme, host_header, str(address))
    own = _OWN_HEADERS | {"authorization"} if parsed.userinfo else _OWN_HEADERS
    all_headers = {name: value for name, value in headers.items() if name.lower() not in own}
    all_headers.update({"Host": host_header, "Accept-Encoding": "identity"})
    if parsed.userinfo:  # credentials in the URL: HTTP Basic authentication, as browsers and httpx do
        credentials = f"{parsed.username}:{parsed.password}".encode()
        all_headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
    deadline = time.monotonic() + timeout
    connection = _kept(key, timeout)
    if connection is None:
        port = parsed.port or (443 if https else 80)
        if https:
            server_name = parsed.raw_host.decode("ascii")
            connection = _PinnedHTTPSConnection(str(address), port, server_name=server_name, timeout=timeout)
        else:
            connection = http.client.HTTPConnection(str(address), port, timeout=timeout)
    try:
        connection.request("POST", parsed.raw_path.decode("ascii"), body=content, headers=all_headers)
        response = connection.getresponse()
        body, truncated = _read_capped(response, max_response_bytes, deadline)
    except TimeoutError as exc:
        connection.close()
        raise Timeout(f"no answer within {timeout:g} s ({type(exc).__name__})")
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        raise ConnectionFailed(f"{type(exc).__name__}: {exc}"[:300])
    if truncated or response.will_close:
        connection.close()
    else:
        _keep(key, connection)
    return Answer(response.status, response.headers, body, truncated)


# Keep-alive connections, one per (scheme, host, checked address) and per thread: a kept
# connection is only ever reused for the host name (and TLS name) it was opened for, and
# never shared between threads. One the server has closed (or left idle for too long) is
# not reused.
_local = threading.local()
MAX_CLIENTS = 16
KEEPALIVE_SECONDS = 30.0
Key = tuple[str, str, str]


def _kept(key: Key, timeout: float) -> http.client.HTTPConnection | None:
    kept: OrderedDict[Key, tuple[http.client.HTTPConnection, float]] | None = getattr(_local, "kept", None)
    found = kept.pop(key, None) if kept is not None else None
    if found is None:
        return None
    connection, idle_since = found
    sock = connection.sock
    if sock is None or time.monotonic() - idle_since > KEEPALIVE_SECONDS or select.select([sock], [], [], 0)[0]:
        connection.close()  # readable while idle: the server closed it (or sent what nobody asked for)
        return None
    connection.timeout = timeout
    sock.settimeout(timeout)
    return connection


def _keep(key: Key, connection: http.client.HTTPConnection) -> None:
    kept: OrderedDict[Key, tuple[http.client.HTTPConnection, float]] | None = getattr(_local, "kept", None)
    if kept is None:
        kept = _local.kept = OrderedDict()
    kept[key] = (connection, time.monotonic())
    if len(kept) > MAX_CLIENTS:
        kept.popitem(last=False)[1][0].close()


def _read_capped(response: http.client.HTTPResponse, limit: int, deadline: float) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, read as a stream (a 50 MB answer is cut)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.read1(8192) if response.length != 0 else b""
        if not chunk:
            response.close()  # read to the end: the connection may carry the next request
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
        if size > limit or time.monotonic() > deadline:
            return b"".join(chunks)[:limit], True
