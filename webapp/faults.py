"""Fault-injection points for the durability tests; inert unless WORKFLOWS_FAULTS names them.

`WORKFLOWS_FAULTS=after-create,replace-claimed` makes the process that reaches one of those points
record it in Redis (`fault:<name>` = its pid) and then stop there (sleep) until a test kills it,
so a test can kill -9 a process inside a window no signal could hit reliably. `sink-flush` and
`reader` raise instead of stopping; `reader-lags` records itself, waits for a condition, then goes
on. Production never sets the variable; it is read once per process.
"""
from __future__ import annotations

import logging
import os
import time

from .config import settings

log = logging.getLogger(__name__)

_ENABLED = frozenset(p.strip() for p in settings().WORKFLOWS_FAULTS.split(",") if p.strip())

POINTS = {
    "after-create": "the runner created the container and has not started it",
    "after-terminal": "a run's terminal status is committed; nothing after it has been handed over",
    "replace-claimed": "the scheduler claimed a replace instant and has not committed the fire",
    "sink-flush": "storing output fails (raises)",
    "reader": "reading the container's output fails (raises)",
    "reader-lags": "a re-attached worker opened the container's log and reads it only once the container "
                   "has exited (a reader far behind its container, as on a loaded machine)",
}


class InjectedFault(RuntimeError):
    pass


def stop_here(name: str) -> None:
    """Record that this process reached `name`, then wait to be killed."""
    if name not in _ENABLED:
        return
    _record(name)
    log.warning("fault point %s reached; stopping here", name)
    while True:
        time.sleep(3600)


def _record(name: str) -> None:
    from flask import current_app

    from . import keys
    from .connections import get_redis
    get_redis(current_app.config["REDIS_URL"]).set(keys.fault(name), os.getpid(), ex=600)


def raise_here(name: str) -> None:
    if name in _ENABLED:
        raise InjectedFault(f"injected fault: {name}")


def wait_here(name: str, until, timeout: float = 120) -> None:
    """Wait at `name` until `until()` is true (or `timeout` passes), then go on."""
    if name not in _ENABLED:
        return
    _record(name)
    log.warning("fault point %s reached; waiting", name)
    end = time.monotonic() + timeout
    while not until() and time.monotonic() < end:
        time.sleep(0.1)
