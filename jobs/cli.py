"""`flask worker` (a pool of RQ worker slots) and `flask scheduler` (cron fires and the sweeper)."""
from __future__ import annotations

import logging
import os
import contextlib
import functools
import signal
import sys
import threading
import time

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from webapp.heap import settle_heap

from .loop import every

log = logging.getLogger("workflows")
# How long a stopping pool gives its slots and keeper to end cleanly (the keeper records the host's
# clean stop) before it kills them. Short on purpose: a slot's warm shutdown would wait out its run,
# and a run in flight is not lost (its container goes on, and is re-attached).
CHILD_STOP_GRACE_SEC = 5

SCHEDULER_TICK_SEC = 0.2
SWEEP_EVERY_SEC = 2.0


@click.command("worker")
@with_appcontext
@click.option("--slots", type=int, default=None, help="concurrent runs (default WORKER_SLOTS)")
@click.option("--pool", "pools", multiple=True, default=["default"], show_default=True,
              help="a worker pool whose runs this worker takes (repeatable)")
def worker(slots: int | None, pools: tuple[str, ...]):
    """Run WORKER_SLOTS run slots (RUNS_PER_PROCESS to a process) plus NOTIFY_SLOTS notification
    slots; restart any process that dies."""
    from webapp.connections import NO_ENGINE
    from webapp.heartbeats import process_name
    from webapp.schemas import valid_pool
    from webapp.keys import NOTIFY_QUEUE, host_queue, pool_queue

    from . import hosts
    if current_app.config["DOCKER_HOST"] == NO_ENGINE:
        raise click.UsageError("DOCKER_HOST=none says this host has no Docker engine: run workers on the "
                               "engine hosts (docs/deploy.md)")
    egress_problem = _guard_egress()
    for pool in pools:
        if not valid_pool(pool):
            raise click.BadParameter(f"{pool!r}: lowercase letters, digits, - and _, at most 40", param_hint="--pool")
    pools = tuple(dict.fromkeys(pools))
    slots = slots or current_app.config["WORKER_SLOTS"]
    _configure_logging()
    app_ = current_app._get_current_object()
    host, version = hosts.identify()
    hosts.set_current(host)  # the slots fork with it: the runs they claim record this host
    hosts.warn_if_single_host_database(host)
    keeper = functools.partial(hosts.keep, app_, process_name(), host, list(pools), slots, version,
                               egress_problem)
    log.info("worker host %s (engine %s), pools %s", host, version or "not answering", ", ".join(pools))
    run_queues = [host_queue(host)] + [pool_queue(p) for p in pools]
    per_process = current_app.config["RUNS_PER_PROCESS"]
    groups = [(run_queues, n) for n in [per_process] * (slots // per_process) + [slots % per_process] if n]
    Supervisor(app_, groups + [([NOTIFY_QUEUE], 1)] * current_app.config["NOTIFY_SLOTS"], keeper=keeper).run()


@click.command("scheduler")
@with_appcontext
def scheduler():
    """Fire cron schedules and sweep runs, forever (several may run: fires stay exactly-once)."""
    from webapp.heartbeats import beat

    from .schedule import fire_due, repair_next_run_at
    _configure_logging()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    repair_next_run_at()
    settle_heap()
    app_ = current_app._get_current_object()
    # The sweep runs on a thread of its own: a slow sweep (a database under load) never delays a fire.
    threading.Thread(target=_sweep_forever, args=(app_, stopping), daemon=True, name="sweeper").start()
    log.info("scheduler started")
    last_beat = [0.0]

    def tick():
        try:
            fire_due()
        finally:
            if time.monotonic() - last_beat[0] >= 1.0:
                try:
                    beat("scheduler")
                    last_beat[0] = time.monotonic()
                except Exception:  # Redis away: fires go on, the sweep hands them over later
                    pass
    every(SCHEDULER_TICK_SEC, "scheduler tick", tick, stopping)


@click.command("egress-rules")
@with_appcontext
def egress_rules():
    """Print the egress rules a worker installs for its engine (iptables-restore input, then the
    two jumps), for an engine host the workers cannot rule themselves (a remote DOCKER_HOST)."""
    from . import egress, engine
    click.echo(egress.rules(egress.allowed()), nl=False)
    click.echo(f"# then: iptables -I DOCKER-USER -i {engine.RUNS_BRIDGE} -j {egress.CHAIN}")
    click.echo(f"# and:  iptables -I INPUT -i {engine.RUNS_BRIDGE} -j REJECT")


@click.command("host-guard")
@with_appcontext
@click.argument("host", required=False)
@click.option("--stay", is_flag=True, help="keep guarding when nothing is left (a service of its own)")
def host_guard(host: str | None, stay: bool):
    """Fence HOST's run containers when its heartbeat stops (jobs/fence.py). The host keeper
    forks one into a session of its own, which outlives the worker and leaves when nothing is
    left; under systemd, whose stop ends every process of a unit, run it as a unit of its own
    with --stay (docs/deploy.md). HOST: this engine's host name, as `flask worker` finds it."""
    from . import fence, hosts
    _configure_logging()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for `make run` is not for it
    fence.guard(host or hosts.identify()[0], stay=stay)


def _guard_egress() -> str | None:
    """The egress rules before any run (jobs/egress.py): in production, no worker without them;
    elsewhere, why not (shown on the Workers page and /healthz), or None when installed."""
    from . import egress, engine
    try:
        return egress.guard(engine.RUNS_BRIDGE)
    except egress.EgressUnguarded as e:
        raise click.UsageError(f"run containers cannot be kept from private networks: {e} "
                               "(README, security model)") from None


def _sweep_forever(app: Flask, stopping: threading.Event) -> None:
    from .sweeper import sweep
    with app.app_context():
        every(SWEEP_EVERY_SEC, "sweep", sweep, stopping)


def _configure_logging() -> None:
    from webapp.process_log import configure
    configure()


def _die_with_parent() -> None:
    """A slot is killed when its supervisor dies (even by SIGKILL), instead of living on unsupervised
    and out of Ctrl-C's reach. Its run's container survives; the sweeper re-attaches it."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux/glibc: slots then outlive a killed supervisor
        pass


class Supervisor:
    """Keeps one forked child per slot process alive; stops them all on SIGTERM or SIGINT.

    Hand-written rather than RQ's WorkerPool: slots listen to different queues (runs, notify),
    a stop must not wait out long runs (their containers are re-attached later), and each slot
    process dies with the supervisor. They are forked once the app is loaded, so one (re)starts in
    milliseconds instead of importing everything again. A slot process holds one slot or several
    (RUNS_PER_PROCESS), each a thread running one run at a time."""

    def __init__(self, app: Flask, slot_queues: list[tuple[list[str], int]], keeper=None):
        self.app = app
        self.slot_queues = slot_queues  # per slot process: its queues and how many slots (threads)
        self.keeper = keeper  # a child of its own besides the slots (the host keeper), kept alive too
        self.children: dict[int, int] = {}  # slot process index -> pid
        self.stopping = False

    def _spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            self.children[index] = pid
            return
        code = 1
        try:
            _die_with_parent()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN if index == len(self.slot_queues) else signal.SIG_DFL)
            if index == len(self.slot_queues):
                self.keeper()
            else:
                run_slot(self.app, *self.slot_queues[index])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            log.exception("worker slot %d crashed", index)
        finally:
            logging.shutdown()
            os._exit(code)

    def _exited(self, pid: int) -> int | None:
        """The exit status of a slot that ended (reaped), or None while it runs."""
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return -1
        return os.waitstatus_to_exitcode(status) if done else None

    def _stop(self, *_):
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        settle_heap()  # before the forks: the children share the loaded app's pages
        for i in range(len(self.slot_queues) + (self.keeper is not None)):
            self._spawn(i)
        from webapp.heartbeats import beat
        log.info("worker started with %d slots in %d processes", sum(n for _, n in self.slot_queues),
                 len(self.slot_queues))
        last_beat = 0.0
        while not self.stopping:
            for i, pid in list(self.children.items()):
                code = self._exited(pid)
                if code is not None and not self.stopping:
                    log.warning("worker slot %d exited with %s; restarting", i, code)
                    time.sleep(0.5)
                    self._spawn(i)
            if time.monotonic() - last_beat >= 1.0:
                try:
                    with self.app.app_context():
                        beat("worker")
                    last_beat = time.monotonic()
                except Exception:
                    pass
            time.sleep(0.2)
        # Runs in flight are not lost: their containers keep running and the sweeper re-attaches
        # them when a worker is back. So stop promptly rather than wait out long runs.
        for pid in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + CHILD_STOP_GRACE_SEC
        alive = set(self.children.values())
        while alive and time.monotonic() < deadline:
            alive = {pid for pid in alive if self._exited(pid) is None}
            time.sleep(0.05)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._exited(pid)


def run_slot(app: Flask, queues: list[str], slots: int = 1) -> None:
    """A slot process: `slots` RQ worker slots taking jobs of `queues`, each one at a time, in this
    process (no fork per job). One slot works in the main thread; several work in threads of their
    own, and a slot whose thread ends ends the process (the supervisor starts it again; the other
    slots' runs are re-attached as after any death)."""
    from webapp.extensions import db
    with app.app_context():
        db.engine.dispose(close=False)  # a forked child must not share the parent's connections
    if slots == 1:
        _work(app, queues, threaded=False)
        return
    threads = [threading.Thread(target=_work, args=(app, queues, True), daemon=True, name=f"slot-{i}")
               for i in range(slots)]
    for thread in threads:
        thread.start()
    while all(thread.is_alive() for thread in threads):
        time.sleep(0.5)
    log.error("a worker slot's thread ended; restarting its process")
    sys.exit(1)


def _work(app: Flask, queues: list[str], threaded: bool) -> None:
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer
    from rq.timeouts import TimerDeathPenalty

    from webapp.connections import get_redis
    from webapp.services.dispatch import queue

    from .tasks import TaskJob

    class ThreadSlot(SimpleWorker):
        """A slot in a thread: signals are the main thread's, and a job's timeout is a timer."""
        death_penalty_class = TimerDeathPenalty

        def _install_signal_handlers(self) -> None:
            pass

    with app.app_context():
        # RQ raises the socket timeout of the client it is given to cover its blocking pop: give
        # it a client of its own, so the short timeout of the lease's client stays short.
        redis = get_redis(blocking=True)
        worker = (ThreadSlot if threaded else SimpleWorker)(
            [queue(q, redis) for q in queues], connection=redis, serializer=JSONSerializer, job_class=TaskJob)
        worker.work(logging_level="WARNING", with_scheduler=False)


def register(app: Flask) -> None:
    for command in (worker, scheduler, host_guard, egress_rules):
        app.cli.add_command(command)
