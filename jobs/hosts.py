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
from sqlalchemy import select

from webapp import metrics
from webapp.config import ROOT
from webapp.connections import get_docker
from webapp.extensions import db
from webapp.models import Run
from webapp.vocabulary import TERMINAL
from webapp.models.base import utcnow
from webapp.models.clock import clock
from webapp.runoutput import read
from webapp.services import hosts

from . import fence, images
from .loop import every, guarded
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


def keep(app: Flask, name: str, host: str, pools: list[str], slots: int, version: str | None,
         egress_problem: str | None = None) -> None:
    """The host keeper, one child of each worker supervisor: the heartbeat of this worker process in
    the database every second (each one the database accepted recorded for the host's guard,
    jobs/fence.py), this engine's leftovers removed every few seconds, and the guard kept running.
    A SIGTERM (the supervisor stopping cleanly) records the stop; the runs' containers go on
    running, until a worker of this host takes them back or the guard fences them."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with app.app_context():
        db.engine.dispose(close=False)
        while not stopping.is_set() and not guarded("registering", lambda: hosts.register(
                name, host, pools, slots, version, egress_problem)):
            stopping.wait(1)
        heart = Heart(name, host)
        # on a thread of its own: an engine that is slow to answer must not delay the heartbeat
        threading.Thread(target=_every_in, args=(app, REAP_EVERY_SEC, "reaping", heart.reap, stopping),
                         daemon=True, name="reaper").start()
        every(hosts.BEAT_EVERY_SEC, "heartbeat", heart.beat, stopping)
        guarded("recording the stop", lambda: hosts.stopped(name))
        fence.record_stop(host)


class Heart:
    """The keeper's two duties: the heartbeat (with the clock's offset, measured every
    CLOCK_EVERY_SEC, and the fence notes told once the database answers again), and the reap."""

    CLOCK_EVERY_SEC = 10.0

    def __init__(self, name: str, host: str):
        self.name, self.host = name, host
        self.offset_ms: int | None = None
        self.next_clock = 0.0
        self.guarded = False
        self.next_prune = 0.0

    def beat(self) -> None:
        self._measure_clock()
        sent = time.monotonic()
        hosts.beat(self.name, self.offset_ms)
        fence.record_beat(self.host, sent)
        if not self.guarded:
            fence.ensure_guard(self.host)
            self.guarded = True
        self._tell_notes()

    def reap(self) -> None:
        if self.guarded:  # not before the first beat: a guard that finds none leaves at once
            fence.ensure_guard(self.host)
        reap()
        if time.monotonic() >= self.next_prune:
            self.next_prune = time.monotonic() + images.IMAGE_PRUNE_EVERY_SEC
            images.prune(get_docker().api, current_app.config["IMAGE_KEEP_DAYS"])

    def _measure_clock(self) -> None:
        if time.monotonic() < self.next_clock:
            return
        self.next_clock = time.monotonic() + self.CLOCK_EVERY_SEC
        offset = clock.measure()
        if offset is None:
            return
        was_off = self.offset_ms is not None and abs(self.offset_ms) > hosts.CLOCK_TOLERANCE_MS
        self.offset_ms = round(offset * 1000)
        if abs(self.offset_ms) > hosts.CLOCK_TOLERANCE_MS and not was_off:
            log.warning("this host's clock is %+.1f s off the database's; nothing of ours depends on it (the "
                        "database's clock decides), but logs and containers see this host's time", offset)

    def _tell_notes(self) -> None:
        """Fence notes of runs finished meanwhile (failed "worker host lost" elsewhere) go to the
        end of their logs; a run still running keeps its note for the worker that completes it."""
        for run_id, text in fence.notes(self.host).items():
            if read.note_in_log(run_id, text) is not False:
                fence.drop_note(self.host, run_id)


def _every_in(app: Flask, seconds: float, what: str, step, stopping: threading.Event) -> None:
    with app.app_context():
        every(seconds, what, step, stopping)


def reap() -> int:
    """Remove this installation's containers on this engine whose run is finished or unknown
    (a run that ended while its host was away or lost leaves its container here)."""
    def keeping(run_ids: set[str]) -> set[str]:
        """Of these runs, those whose container stays: not terminal, or just finished (its worker
        is removing it right now). One query for them all."""
        grace = utcnow() - timedelta(seconds=REAP_GRACE_SEC)
        return set(db.session.scalars(select(Run.public_id).where(
            Run.public_id.in_(run_ids),
            Run.status.not_in(TERMINAL) | (Run.finished_at > grace))).all()) if run_ids else set()

    removed = DockerExecutor(get_docker().api).reap(keeping)
    db.session.commit()
    metrics.count("containers_reaped", amount=removed)
    return removed
