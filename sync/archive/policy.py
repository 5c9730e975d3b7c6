"""Which URLs the archive may fetch: the host allow-list and the address rules (pure).

A record's URL is data from outside. A URL is fetched only when its scheme is http or https and
its host matches ``SYNC_ARCHIVE_HOSTS``. Patterns are host names (``files.tanmarket.cn``),
wildcards for subdomains (``*.tanmarket.cn``), IP addresses (``127.0.0.1``) and networks
(``10.0.0.0/8``). After DNS, an address that is private, loopback, link-local, multicast,
reserved or unspecified is refused unless an address or network pattern covers it: a name
pattern alone never admits such an address, so a public name pointed at an internal address
(DNS rebinding included) is refused.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})


class HostPatternError(ValueError):
    """A pattern of the allow-list cannot be read."""


@dataclass(frozen=True, slots=True)
class HostPolicy:
    names: frozenset[str]  # exact host names, lowercase, without a trailing dot
    suffixes: tuple[str, ...]  # ".tanmarket.cn" for "*.tanmarket.cn"
    networks: tuple[Network, ...]  # addresses are /32 (or /128) networks

    @classmethod
    def parse(cls, text: str) -> HostPolicy:
        """Patterns separated by commas or whitespace; HostPatternError names a bad one."""
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[Network] = []
        for raw in text.replace(",", " ").split():
            pattern = raw.strip().lower().rstrip(".")
            network = _network(pattern)
            if network is not None:
                networks.append(network)
            elif pattern.startswith("*."):
                rest = pattern[2:]
                if not _is_host_name(rest):
                    raise HostPatternError(f"{raw!r} is not a host pattern (write *.example.com)")
                suffixes.append("." + rest)
            elif _is_host_name(pattern):
                names.add(pattern)
            else:
                raise HostPatternError(
                    f"{raw!r} is not a host name, *.domain, IP address or network"
                )
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def host_allowed(self, host: str) -> bool:
        """Whether the URL's host (a name or an address literal) is on the list."""
        host = host.lower().rstrip(".").removeprefix("[").removesuffix("]")
        literal = _address(host)
        if literal is not None:
            return self.names_address(literal)
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def names_address(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def address_allowed(self, address: Address) -> bool:
        """Whether a resolved address may be connected to."""
        return is_public(address) or self.names_address(address)

    def check_url(self, url: str) -> str | None:
        """Why ``url`` may not be fetched (None when it may): scheme, host, allow-list."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            return "not a valid URL"
        del port  # read only so that a malformed port is refused here
        if parts.scheme.lower() not in ALLOWED_SCHEMES:
            return f"scheme {parts.scheme or '(none)'!r} is not http or https"
        host = _host_of(parts)
        if not host:
            return "URL has no host"
        if parts.username is not None or parts.password is not None:
            return "URL carries credentials"
        if not self.host_allowed(host):
            return f"host {host} is not in SYNC_ARCHIVE_HOSTS"
        return None


def is_public(address: Address) -> bool:
    """A globally routable unicast address (IPv4-mapped IPv6 judged as the IPv4 inside)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def parse_address(text: str) -> Address | None:
    return _address(text)


def _host_of(parts: SplitResult) -> str:
    return (parts.hostname or "").rstrip(".")


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _network(pattern: str) -> Network | None:
    try:
        return ipaddress.ip_network(pattern.removeprefix("[").removesuffix("]"), strict=False)
    except ValueError:
        return None


def _is_host_name(text: str) -> bool:
    if not text or len(text) > 253:
        return False
    labels = text.split(".")
    return all(
        0 < len(label) <= 63
        and label.isascii()
        and all(c.isalnum() or c == "-" for c in label)
        and not label.startswith("-")
        and not label.endswith("-")
        for label in labels
    )
