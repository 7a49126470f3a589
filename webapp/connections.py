"""Process-wide clients for Redis and the Docker engine, made lazily and remade after a fork."""
from __future__ import annotations

import os

import docker
import redis
from flask import current_app

_clients: dict = {}


def _cached(kind: str, key: str, make):
    slot = (kind, key, os.getpid())
    client = _clients.get(slot)
    if client is None:
        client = _clients[slot] = make()
    return client


def get_redis(url: str | None = None) -> redis.Redis:
    url = url or current_app.config["REDIS_URL"]
    return _cached("redis", url, lambda: redis.Redis.from_url(url, socket_timeout=30,
                                                              socket_connect_timeout=5,
                                                              health_check_interval=30))


def get_docker(base_url: str | None = None, timeout: int = 60) -> docker.DockerClient:
    base_url = base_url or current_app.config.get("DOCKER_HOST") or None
    key = f"{base_url}|{timeout}"

    def make():
        if base_url:
            return docker.DockerClient(base_url=base_url, timeout=timeout)
        return docker.from_env(timeout=timeout)

    return _cached("docker", key, make)
