"""Fault-injection points for the durability tests; inert unless WORKFLOWS_FAULTS names them.

`WORKFLOWS_FAULTS=after-create,replace-claimed` makes the process that reaches one of those points
record it in Redis (`fault:<name>` = its pid) and then stop there (sleep) until a test kills it,
so a test can kill -9 a process inside a window no signal could hit reliably. `sink-flush` and
`reader` raise instead of stopping. Production never sets the variable; it is read once per
process.
"""
from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)

_ENABLED = frozenset(p.strip() for p in os.environ.get("WORKFLOWS_FAULTS", "").split(",") if p.strip())

POINTS = {
    "after-create": "the runner created the container and has not started it",
    "after-terminal": "a run's terminal status is committed; nothing after it has been handed over",
    "replace-claimed": "the scheduler claimed a replace instant and has not committed the fire",
    "sink-flush": "storing output fails (raises)",
    "reader": "reading the container's output fails (raises)",
}


class InjectedFault(RuntimeError):
    pass


def enabled(name: str) -> bool:
    return name in _ENABLED


def stop_here(name: str) -> None:
    """Record that this process reached `name`, then wait to be killed."""
    if name not in _ENABLED:
        return
    from flask import current_app

    from .connections import get_redis
    get_redis(current_app.config["REDIS_URL"]).set(f"fault:{name}", os.getpid(), ex=600)
    log.warning("fault point %s reached; stopping here", name)
    while True:
        time.sleep(3600)


def raise_here(name: str) -> None:
    if name in _ENABLED:
        raise InjectedFault(f"injected fault: {name}")
