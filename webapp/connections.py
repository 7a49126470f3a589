"""Process-wide clients for Redis and the Docker engine, made lazily and remade after a fork."""
from __future__ import annotations

import os
import threading

import docker
import redis
from flask import current_app

_clients: dict = {}
_making: dict = {}  # a lock per client being made: a slow make (docker-py asks the engine its
_making_lock = threading.Lock()  # version) holds back only those asking for the same client


def _new_lock_in_child() -> None:
    """A fork copies the lock as it was: held, if another thread was taking it at that instant,
    and then held forever in the child (the keeper forks the host guard while its threads run).
    The per-client locks need no reset: a child's clients are its own (the pid is in the key)."""
    global _making_lock
    _making_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)
MAX_REDIS_CONNECTIONS = 10_000
DOCKER_POOL_SIZE = 128


def per_process(kind: str, key: str, make):
    """The one `kind` object for `key` in this process, made by `make()` on first use; a forked
    child makes its own."""
    slot = (kind, key, os.getpid())
    found = _clients.get(slot)
    if found is None:
        with _making_lock:
            making = _making.setdefault(slot, threading.Lock())
        with making:
            found = _clients.get(slot)
            if found is None:
                found = _clients[slot] = make()
    return found


def socket_timeout() -> float:
    """Shorter than a third of the run lease: a hung Redis call cannot outlast a lease renewal."""
    return max(0.5, min(5.0, current_app.config["RUN_LEASE_TTL_SEC"] / 3))


def get_redis(url: str | None = None, *, blocking: bool = False) -> redis.Redis:
    """The process's Redis client. Commands are quick, so the socket timeout is short; `blocking`
    gives a separate client for blocking reads (XREAD BLOCK, RQ's BLPOP) with a long one."""
    url = url or current_app.config["REDIS_URL"]
    timeout = 60.0 if blocking else socket_timeout()
    # redis-py's pool stops at 100 connections; a slot process of many slots holds one blocking
    # read per slot, and its runs' threads call at once: the server's own limit is the bound.
    return per_process("redis-blocking" if blocking else "redis", url,
                   lambda: redis.Redis.from_url(url, socket_timeout=timeout,
                                                socket_connect_timeout=min(timeout, 5.0),
                                                health_check_interval=30, max_connections=MAX_REDIS_CONNECTIONS))


NO_ENGINE = "none"  # DOCKER_HOST of a web or scheduler host that has no engine


def get_docker(base_url: str | None = None, timeout: int = 60) -> docker.DockerClient:
    base_url = base_url or current_app.config.get("DOCKER_HOST") or None
    key = f"{base_url}|{timeout}"

    def make():
        # from_env reads DOCKER_TLS_VERIFY and DOCKER_CERT_PATH too: a remote engine over TLS
        environment = dict(os.environ, DOCKER_HOST=base_url) if base_url else None
        # docker-py keeps 10 connections a pool; a slot process of many runs calls from a thread each
        return docker.from_env(timeout=timeout, environment=environment, max_pool_size=DOCKER_POOL_SIZE)

    return per_process("docker", key, make)
