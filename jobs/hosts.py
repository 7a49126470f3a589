"""This worker's engine host: its identity, its heartbeat, and the removal of its engine's
leftover containers. Everything bound to an engine is done by a worker on that engine's host: the
scheduler never calls an engine (it may run on a machine that has none)."""
from __future__ import annotations

import hashlib
import logging
import re
import signal
import socket
import threading
import time
from datetime import timedelta

import requests
from docker.errors import DockerException
from flask import Flask, current_app

from webapp import metrics
from webapp.config import ROOT
from webapp.connections import get_docker
from webapp.extensions import db
from webapp.models import Run
from webapp.models.base import utcnow
from webapp.services import hosts

from .executor import DockerExecutor

log = logging.getLogger(__name__)

REAP_EVERY_SEC = 5.0
# Nothing reads a container once its run is terminal; the grace only spares a double removal.
REAP_GRACE_SEC = 5

DEFAULT_ROOT = "/var/lib/docker"
_current: str | None = None  # set by the supervisor before its slots fork


def identify() -> tuple[str, str | None]:
    """(host name, engine version): WORKER_HOST, else the engine's own name and the first part of
    its id, and a hash of its data root if not the default one (two engines on one machine share
    the id). The name is remembered on this machine
    per engine address, so that a worker starting while its engine is down (restarting) still
    answers for its runs; with neither, the machine's name, and a warning."""
    configured = current_app.config["WORKER_HOST"]
    remembered = ROOT / "var" / f"worker-host-{hashlib.sha1(str(current_app.config['DOCKER_HOST']).encode()).hexdigest()[:12]}"
    try:
        info = get_docker(timeout=10).api.info()
    except (DockerException, requests.exceptions.RequestException) as e:
        name = configured or (remembered.read_text().strip() if remembered.exists() else "") or socket.gethostname()
        if not configured:
            log.warning("the Docker engine did not answer (%s); this worker's host is named %s "
                        "(WORKER_HOST sets it)", type(e).__name__, name)
        return name, None
    if configured:
        return configured, info.get("ServerVersion")
    default = f"{info.get('Name') or socket.gethostname()}-{(info.get('ID') or '').split(':')[0].lower()}"
    root = info.get("DockerRootDir") or DEFAULT_ROOT
    if root != DEFAULT_ROOT:  # a second engine on one machine shares its id (/etc/docker/key.json)
        default += "-" + hashlib.sha1(root.encode()).hexdigest()[:6]
    name = re.sub(r"[^A-Za-z0-9._-]", "-", default.strip("-"))[:200]
    try:
        remembered.parent.mkdir(exist_ok=True)
        remembered.write_text(name + "\n")
    except OSError:
        pass
    return name, info.get("ServerVersion")


def set_current(name: str) -> None:
    global _current
    _current = name


def current() -> str:
    """The engine host of this process (identified once)."""
    if _current is None:
        set_current(identify()[0])
    return _current


def warn_if_single_host_database(host: str) -> None:
    """SQLite is for one host: say so at start when workers of another host use this database."""
    if db.engine.dialect.name != "sqlite":
        return
    try:
        others = hosts.other_hosts(host)
    except Exception:  # not migrated yet, or locked: the keeper's registration will say more
        db.session.rollback()
        return
    finally:
        db.session.remove()
    if others:
        log.warning("this database is SQLite, which serves one host only, and workers of other hosts (%s) "
                    "use it too: run PostgreSQL for several hosts (docs/deploy.md)", ", ".join(sorted(others)))


def keep(app: Flask, name: str, host: str, pools: list[str], slots: int, version: str | None) -> None:
    """The host keeper, one child of each worker supervisor: the heartbeat of this worker process in
    the database every second, and this engine's leftovers removed every few seconds. A SIGTERM
    (the supervisor stopping cleanly) records the stop; the runs' containers go on running."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    with app.app_context():
        db.engine.dispose(close=False)
        _retry(lambda: hosts.register(name, host, pools, slots, version), stopping)
        # on a thread of its own: an engine that is slow to answer must not delay the heartbeat
        threading.Thread(target=_reap_forever, args=(app, stopping), daemon=True, name="reaper").start()
        while not stopping:
            started = time.monotonic()
            _guard("heartbeat", lambda: hosts.beat(name))
            time.sleep(max(0.0, hosts.BEAT_EVERY_SEC - (time.monotonic() - started)))
        _guard("recording the stop", lambda: hosts.stopped(name))


def _reap_forever(app: Flask, stopping: list) -> None:
    with app.app_context():
        while not stopping:
            started = time.monotonic()
            _guard("reaping", reap)
            time.sleep(max(0.0, REAP_EVERY_SEC - (time.monotonic() - started)))


def _retry(step, stopping: list) -> None:
    while not stopping:
        if _guard("registering", step):
            return
        time.sleep(1)


_warned: set[str] = set()


def _guard(what: str, step) -> bool:
    try:
        step()
        _warned.discard(what)
        return True
    except Exception as e:
        db.session.rollback()
        if what not in _warned:
            _warned.add(what)
            log.warning("worker host %s failed: %s: %s", what, type(e).__name__, str(e)[:200])
        return False
    finally:
        db.session.remove()


def reap() -> int:
    """Remove this installation's containers on this engine whose run is finished or unknown
    (a run that ended while its host was away or lost leaves its container here)."""
    def keep(public_id: str | None) -> bool:
        run = db.session.query(Run).filter_by(public_id=public_id).first() if public_id else None
        if run is None:
            return False
        if not run.terminal:
            return True
        # just finished: its worker is removing it right now
        return bool(run.finished_at and utcnow() - run.finished_at < timedelta(seconds=REAP_GRACE_SEC))

    removed = DockerExecutor(get_docker().api).reap(keep)
    db.session.commit()
    metrics.count("containers_reaped", amount=removed)
    return removed
