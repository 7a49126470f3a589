"""Where a notification may be sent: one resolution of the endpoint's name, every address judged."""
from __future__ import annotations

from flask import current_app

from .. import addresses


def destination_problem(host: str, *, resolve_failures_ok: bool = False) -> str | None:
    """Why a notification may not be sent to `host`, or None (see `destination`). A channel is
    saved with a name that does not resolve yet (`resolve_failures_ok`); nothing is sent to it
    until it resolves to an allowed address."""
    if resolve_failures_ok and addresses.resolve(host) is None:
        return None
    return destination(host)[1]


def destination(host: str) -> tuple[str | None, str | None]:
    """(the address to connect to, None) or (None, why not), from one resolution of `host`. Every
    address it resolves to must be global: never link-local (169.254.0.0/16: cloud metadata),
    multicast, unspecified, reserved or shared (CGNAT, 100.64.0.0/10); loopback and private ranges
    only where the installation allows them (NOTIFY_ALLOW_PRIVATE, on outside production) or for
    hosts named in NOTIFY_ALLOWED_HOSTS. A name that does not resolve is refused. Checked when a
    channel is saved and at each delivery, which connects to the very address checked (no second
    resolution a DNS answer could change in between)."""
    cfg = current_app.config
    found = addresses.resolve(host)
    if not found:
        return None, f"{host} does not resolve"
    if host.lower().rstrip(".") in cfg["NOTIFY_ALLOWED_HOSTS"]:
        return found[0], None
    for raw in found:
        ip = addresses.address(raw)
        if addresses.never(ip):
            return None, f"{host} points to {ip}, an address notifications are never sent to"
        if (ip.is_loopback or ip.is_private) and not cfg["NOTIFY_ALLOW_PRIVATE"]:
            return None, (f"{host} points to {ip}, a private address; an operator may allow it with "
                          "NOTIFY_ALLOWED_HOSTS")
        if not (ip.is_global or ip.is_loopback or ip.is_private):  # shared (CGNAT) and the like
            return None, f"{host} points to {ip}, not a public address"
    return found[0], None
