"""IP allow-lists and client-IP detection behind trusted proxies. Django-free."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(value: str) -> IPAddress | None:
    """The address, with IPv4-mapped IPv6 (``::ffff:a.b.c.d``) turned into IPv4; None if invalid."""
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_network(value: str) -> IPNetwork:
    """A network from an address or CIDR string; raises ValueError with a clear message."""
    text = value.strip()
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address or CIDR range") from exc
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return network


def normalise_networks(values: Iterable[str]) -> list[str]:
    """Validated, canonical CIDR strings, in order, without duplicates."""
    seen: list[str] = []
    for value in values:
        if not value.strip():
            continue
        text = str(parse_network(value))
        if text not in seen:
            seen.append(text)
    return seen


def address_allowed(address: str, networks: Sequence[str]) -> bool:
    """True when the address lies in one of the networks."""
    parsed = parse_address(address)
    if parsed is None:
        return False
    for text in networks:
        network = parse_network(text)
        if parsed.version == network.version and parsed in network:
            return True
    return False


def client_ip(remote_addr: str, forwarded_for: str | None, trusted_count: int, trusted_networks: Sequence[str]) -> str:
    """The caller's address.

    Without trusted proxies it is the socket's address and X-Forwarded-For is ignored.
    Otherwise X-Forwarded-For is walked from the right: with a proxy count, the entry
    that many hops back; with trusted networks, the first entry not in them. The
    left-most entry is never trusted just for being there.
    """
    if not forwarded_for or (trusted_count <= 0 and not trusted_networks):
        return remote_addr
    if trusted_networks and not address_allowed(remote_addr, trusted_networks):
        return remote_addr
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    if trusted_networks:
        for hop in reversed(hops):
            if not address_allowed(hop, trusted_networks):
                return hop if parse_address(hop) else remote_addr
        return hops[0] if hops and parse_address(hops[0]) else remote_addr
    # trusted_count proxies: the last one is the socket peer; each appended one hop.
    if len(hops) < trusted_count:
        return remote_addr
    candidate = hops[-trusted_count]
    return candidate if parse_address(candidate) else remote_addr
