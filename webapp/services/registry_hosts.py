"""Whether the engine may be sent to the registry an image reference names."""
from __future__ import annotations

from flask import current_app

from .. import addresses
from ..imageref import DOCKER_HUB, registry_host


def registry_problem(image: str, *, resolve_failures_ok: bool = False) -> str | None:
    """Why the engine may not be sent to pull `image` from its registry, or None: the registry's
    host must resolve to public addresses only, unless the operator named it in
    REGISTRY_ALLOWED_HOSTS (an internal registry on purpose). Otherwise any team could have the
    engine request internal addresses, and pull from an internal registry without a password.
    Checked when a workflow is written (a name that does not resolve yet passes:
    `resolve_failures_ok`) and before the engine is sent to the registry."""
    host = registry_host(image)
    if host == DOCKER_HUB or host.lower() in current_app.config["REGISTRY_ALLOWED_HOSTS"]:
        return None
    name = host[1:host.index("]")] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name.lower() in current_app.config["REGISTRY_ALLOWED_HOSTS"]:
        return None
    found = addresses.resolve(name)
    if not found:
        return None if resolve_failures_ok else f"the registry host {host} does not resolve"
    for raw in found:
        if not addresses.public(addresses.address(raw)):
            return (f"the registry host {host} is at {raw}, not a public address (an operator may allow it: "
                    "REGISTRY_ALLOWED_HOSTS)")
    return None
