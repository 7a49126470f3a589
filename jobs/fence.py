"""Self-fencing: a worker host that cannot show the fleet it is alive stops its own run containers
before the fleet may call it lost and run their retries elsewhere.

The rule, on each host and on its monotonic clock: the host keeper records, in a file of this host
(`var/hosts/<instance>-<host>/beat`), the moment just before each heartbeat the database accepted
(so the database's stamp of it is never older). Once the newest is HOST_FENCE_SEC old, the guard
stops every run container of this host (but those of workflows with onHostLost "wait") (SIGTERM, then SIGKILL after the fence grace; a container
created but not started is removed) and leaves a fence note per run saying why. The sweeper calls
a host lost HOST_LOST_SEC after its newest heartbeat on the database's clock, which is later than
HOST_FENCE_SEC plus the grace: by then the containers are gone. Durations on both sides are
measured by one clock each (this host's monotonic one, the database's), never compared across.

The notes reach the run's log through whoever can write to the database next: a worker that
completes the run says it in its log and error; the keeper appends it to a run that was finished
meanwhile (failed "worker host lost" by the sweeper).

The guard is a process of its own, forked by the host keeper into a session of its own (or `flask
host-guard --stay`, a service of its own): it outlives a worker stopped cleanly, killed with its
whole process group, or crashed, and one runs per host on a machine (a lock file; its pid in
`guard.pid` beside it). It needs neither the database nor Redis, only
that file and the engine. What no guard covers: a machine that froze whole, or lost every process
of ours (the guard too), while its engine keeps containers running (README, "Durability")."""
from __future__ import annotations

import fcntl
import functools
import logging
import os
import re
import signal
import threading
import time
from pathlib import Path

from docker.errors import APIError, NotFound
from flask import current_app

from webapp.config import ROOT
from webapp.connections import get_docker

from . import engine

log = logging.getLogger(__name__)

CHECK_EVERY_SEC = 0.5
STOP_GRACE_SEC = 10  # a cancel's grace; a fence's is shorter when HOST_LOST_SEC leaves less room
LIVE_STATES = ("created", "running", "paused", "restarting")
ENGINE_AWAY_LEAVE_SEC = 60
GUARD_NAME = "wf-host-guard"  # a forked guard's process name


def fence_sec() -> float:
    return current_app.config["HOST_FENCE_SEC"]


def fence_grace() -> int:
    """SIGTERM to SIGKILL when fencing: the run's grace, unless the time left before the host is
    called lost asks for less (half of it, so that the kill lands well before)."""
    room = current_app.config["HOST_LOST_SEC"] - fence_sec()
    return max(1, min(STOP_GRACE_SEC, int(room / 2)))


def host_dir(host: str) -> Path:
    """This installation's (the instance's) files about engine host `host` on this machine."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{engine.instance_id()}-{host}")[:200]
    return ROOT / "var" / "hosts" / name


def record_beat(host: str, sent_at: float) -> None:
    """A heartbeat of `host` was accepted; it was sent at `sent_at` (this machine's monotonic clock)."""
    _write(host_dir(host) / "beat", f"{sent_at:.6f} {_boot_id()}\n")


def record_stop(host: str) -> None:
    """A worker of `host` stopped cleanly: its guard may leave at once if nothing of the host runs."""
    _write(host_dir(host) / "stopped", f"{time.monotonic():.6f} {_boot_id()}\n")


def beat_age(host: str) -> float | None:
    """Seconds since the newest accepted heartbeat of `host` was sent; None if none was recorded."""
    sent = _read_stamp(host, "beat")
    return None if sent is None else time.monotonic() - sent


def _read_stamp(host: str, name: str) -> float | None:
    """A monotonic instant written by record_*; None if absent or written before this machine last
    started (its monotonic clock began again)."""
    try:
        value, boot = (host_dir(host) / name).read_text().split()
        return float(value) if boot == _boot_id() else None
    except (OSError, ValueError):
        return None


@functools.cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def fenced(host: str) -> bool:
    """True when `host` is past HOST_FENCE_SEC without a heartbeat: start nothing, keep nothing."""
    age = beat_age(host)
    return age is not None and age >= fence_sec()


def note(host: str, run_id: str, text: str) -> None:
    _write(host_dir(host) / "fenced" / run_id, text)


def read_note(host: str, run_id: str) -> str | None:
    try:
        return (host_dir(host) / "fenced" / run_id).read_text()
    except OSError:
        return None


def drop_note(host: str, run_id: str) -> None:
    (host_dir(host) / "fenced" / run_id).unlink(missing_ok=True)


def notes(host: str) -> dict[str, str]:
    """Every fence note of `host` not yet told: run id -> text."""
    folder = host_dir(host) / "fenced"
    found = {}
    for path in folder.glob("run_*") if folder.is_dir() else ():
        try:
            found[path.name] = path.read_text()
        except OSError:
            pass
    return found


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- the guard -----------------------------------------------------------------------------------
def ensure_guard(host: str) -> None:
    """Start this host's guard unless one runs (its lock is held). Called by the host keeper at
    start and every few seconds, so that a guard that died is replaced while a worker lives.

    The guard is forked from the keeper (no second interpreter to load the app: it guards from the
    first millisecond), twice, so that it belongs to neither the keeper nor its session and no one
    has to reap it. The lock is taken here, before the fork, and the guard inherits it: two calls
    at once (the keeper's beat and its reaper) never start two guards."""
    lock = _lock(host)
    if lock is None:
        return  # a guard holds it
    child = os.fork()
    if child:
        lock.close()  # the guard's copy keeps the lock (flock belongs to the open file)
        os.waitpid(child, 0)
        return
    code = 1
    try:
        os.setsid()  # out of the worker's process group: a kill of the worker's group spares it
        if os.fork() == 0:
            _drop_inherited_sockets()
            _name_process(GUARD_NAME)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the keeper's handler is not the guard's
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for `make run` is not for it
            guard(host, lock=lock)
        code = 0
    except BaseException:
        log.exception("host guard of %s failed", host)
    finally:
        os._exit(code)  # never back into the keeper's code, nor its atexit handlers


def _drop_inherited_sockets() -> None:
    """The keeper's connections (database, Redis, engine) came with the fork: point each of those
    descriptors at /dev/null, so that a connection ends when the keeper does, never held open by the
    guard (a killed keeper's transaction would keep its locks while the guard lives). The numbers
    stay taken, so nothing the guard opens later gets one of them."""
    null = os.open(os.devnull, os.O_RDWR)
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:") and int(name) != null:
                os.dup2(null, int(name))
        except OSError:
            pass
    os.close(null)


def _name_process(name: str) -> None:
    """The name `ps -o comm`, `top` and /proc/PID/comm show (the command line stays the worker's)."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except OSError:  # not Linux/glibc: it keeps the worker's name
        pass


def _lock(host: str):
    """This host's guard lock, held (the open file), or None when a guard holds it."""
    path = host_dir(host) / "guard.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def guard(host: str, stay: bool = False, lock=None) -> None:
    """The guard (forked by the keeper, or `flask host-guard HOST` as a service of its own): fence
    this host's run containers whenever its heartbeat is HOST_FENCE_SEC old; leave once nothing of the host is live on the engine and no worker of it
    beats (the next worker starts a new guard), unless told to `stay`. One per host on a machine
    (`lock`, when the caller holds it already). Its pid is in the host's folder (`guard.pid`).
    An engine that does not answer for ENGINE_AWAY_LEAVE_SEC while no worker beats is left too:
    its containers went with it unless it runs with live-restore, where `--stay` is the answer."""
    lock = lock or _lock(host)
    if lock is None:
        return
    pid_file = host_dir(host) / "guard.pid"
    _write(pid_file, f"{os.getpid()}\n")
    log.info("host guard of %s started (fences at %g s without a heartbeat)", host, fence_sec())
    try:
        _watch(host, stay)
    finally:
        pid_file.unlink(missing_ok=True)  # the lock is still held: no later guard wrote it


def _watch(host: str, stay: bool) -> None:
    away_since = None
    while True:
        age = beat_age(host)
        stopped = _stopped(host)
        idle = age is None or age >= fence_sec() or stopped
        try:
            live = _live_containers(host) if idle else None
            away_since = None
        except Exception as e:  # the engine away (restarting): try again
            log.warning("host guard of %s could not list containers: %s", host, str(e)[:200])
            away_since = away_since or time.monotonic()
            if not stay and time.monotonic() - away_since >= ENGINE_AWAY_LEAVE_SEC:
                log.info("host guard of %s leaving: no worker beats and the engine is away", host)
                return
            time.sleep(CHECK_EVERY_SEC * 4)
            continue
        if not stay and live is not None and _may_leave(live, stopped):
            log.info("host guard of %s leaving: no worker beats and nothing of the host runs", host)
            return
        if live and age is not None and age >= fence_sec():
            _fence(host, live, age)
        time.sleep(CHECK_EVERY_SEC)


def _may_leave(live: list[dict], stopped: bool) -> bool:
    """Of an idle host (no worker beats, or they stopped cleanly): nothing is live; or its workers
    stopped cleanly and what is left was never started: a container prepared ahead of its instant
    (`created`) runs only when a worker of this host starts it, and a worker checks the fence
    first, so the next worker takes it up."""
    return not live or (stopped and all(c.get("State") == "created" for c in live))


def _stopped(host: str) -> bool:
    """The newest word of the host's workers is a clean stop (no heartbeat after it)."""
    stopped, beat = _read_stamp(host, "stopped"), _read_stamp(host, "beat")
    return stopped is not None and (beat is None or stopped >= beat)


def _live_containers(host: str) -> list[dict]:
    api = get_docker(timeout=30).api
    found = api.containers(all=True, filters={"label": [f"{engine.LABEL_INSTANCE}={engine.instance_id()}",
                                                        f"{engine.LABEL_HOST}={host}"]})
    # a run of a workflow that waits for its host (onHostLost "wait") is never retried elsewhere while
    # the host is away: its container runs on through a partition, to be re-attached
    return [c for c in found if c.get("State") in LIVE_STATES and not (c.get("Labels") or {}).get(engine.LABEL_WAITS)]


def _fence(host: str, containers: list[dict], age: float) -> None:
    """Stop (or, not started yet, remove) every live run container of `host`, at once, each with a
    note first: a note without a stop is harmless, a stop without a note would be a mystery."""
    grace = fence_grace()
    text = (f"stopped by its own host ({host}): the host could not record its heartbeat in the database "
            f"for {age:.0f} s (HOST_FENCE_SEC {fence_sec():g}), so it stopped its run containers before "
            "another host could be given the run (self-fencing)")
    api = get_docker(timeout=grace + 30).api
    threads = []
    for c in containers:
        run_id = (c.get("Labels") or {}).get(engine.LABEL_RUN)
        if run_id:
            note(host, run_id, text)
        threads.append(threading.Thread(target=_stop_one, args=(api, c, grace), daemon=True))
        threads[-1].start()
    for t in threads:
        t.join(grace + 30)
    log.warning("host %s fenced: %d run container(s) stopped after %.0f s without a heartbeat",
                host, len(containers), age)


def _stop_one(api, container: dict, grace: int) -> None:
    try:
        if container.get("State") == "created":
            api.remove_container(container["Id"], force=True, v=True)
        else:
            if container.get("State") == "paused":
                api.unpause(container["Id"])
            api.stop(container["Id"], timeout=grace)
    except NotFound:
        pass
    except APIError as e:
        log.warning("fencing container %s: %s; killing it", container["Id"][:12], e.explanation or e)
        try:
            api.kill(container["Id"])
        except (APIError, NotFound):
            pass
