"""Liveness of the long-running processes, kept in Redis with a TTL: what /healthz and the tests
read to know that a worker or a scheduler is up (a key per process, gone soon after it dies).

One of two liveness records, each for its own reader. This one answers "is a scheduler or a
worker up right now?" for /healthz and the dashboard, cheaply and with no database write a
second per process; it may be wrong after a Redis flush, and nothing that decides a run's fate
reads it. services/hosts.py answers "is this engine host alive, away or lost?", the question
that retries a lost host's runs: it lives in the database, on the database's clock, so that
Redis losing its data or a host's clock being off never makes a host look lost."""
from __future__ import annotations

import os
import socket
import time

from .connections import get_redis
from .keys import HEARTBEAT

TTL_SEC = 10
STALE_SEC = 3.0  # processes beat every second: three missed beats mean it is not there


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(role: str, name: str | None = None) -> None:
    get_redis().set(f"{HEARTBEAT}:{role}:{name or process_name()}", f"{time.time():.3f}", ex=TTL_SEC)


def ages(role: str) -> dict[str, float]:
    """Seconds since each live process of `role` last beat."""
    r = get_redis()
    keys = list(r.scan_iter(match=f"{HEARTBEAT}:{role}:*", count=200))
    now = time.time()
    out = {}
    for key, value in zip(keys, r.mget(keys) if keys else []):
        if value is not None:
            out[key.decode().split(":", 3)[3]] = round(max(0.0, now - float(value)), 3)
    return out
