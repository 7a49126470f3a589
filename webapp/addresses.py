"""Names and the addresses they resolve to, as outbound requests (notifications, image pulls)
must check them: resolved once, every address judged."""
from __future__ import annotations

import ipaddress
import socket


def resolve(host: str) -> list[str] | None:
    """Every address `host` resolves to (TCP), in order, or None if it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return None
    return list(dict.fromkeys(info[4][0].split("%", 1)[0] for info in infos))


def address(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(raw)
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip


def never(ip) -> bool:
    """Addresses no outbound request goes to: link-local (cloud metadata), multicast, unspecified,
    reserved."""
    return ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved


def public(ip) -> bool:
    return ip.is_global and not never(ip)
