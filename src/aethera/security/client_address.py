"""The client's address behind trusted reverse proxies: what the rate limits and the bad-key throttle key on.

Behind the documented reverse proxy every request's peer (`request.remote`) is the proxy, so limits
keyed on it would put every client in one bucket. A proxy in `AETHERA_TRUSTED_PROXIES` appends the
address it received the request from to `X-Forwarded-For`; the client's address is the rightmost
entry that is not itself a trusted proxy. Entries left of it were written by the client and are never
believed, so a client cannot pick its own bucket by sending `X-Forwarded-For`. From a peer outside the
trusted networks the header is ignored altogether.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from aethera.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """`AETHERA_TRUSTED_PROXIES` entries (CIDRs or single addresses) as networks; ConfigError naming a bad one."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=True))
        except ValueError as exc:
            raise ConfigError(f"AETHERA_TRUSTED_PROXIES: {cidr.strip()!r} is not a CIDR: {exc}") from None
    return tuple(networks)


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(remote: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str | None:
    """The address of the client that sent the request.

    `remote` is the TCP peer; `forwarded_for` holds every `X-Forwarded-For` header value in order.
    Walk the chain right to left past trusted proxies; the first untrusted address is the client. An
    entry that is not an address ends the walk at the last proxy that passed it on (nothing left of a
    malformed entry can be attributed to anyone).
    """
    if remote is None or not trusted or not _trusted(remote, trusted):
        return remote
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    client = remote
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break
        client = hop
        if not _trusted(hop, trusted):
            break
    return client
