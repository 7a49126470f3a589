"""One run on the engine: claim, pull, create, attach, start, stream, wait, record, clean up.

Ownership: a worker owns a run while it holds the run's lease, a redis-py Lock whose token is
also written in the run row (`owner_token`) when the worker claims or takes over the run. Every
later write the worker makes (container id, start time, output, terminal status) is conditional
on that token, and the live publish checks the lease in Redis. A worker that finds another token
in either place lets go at once: it writes nothing more and leaves the container to the new owner.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import redis
import requests
from docker.errors import APIError, DockerException, NotFound
from flask import current_app
from redis.exceptions import LockError
from sqlalchemy import func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from webapp import faults, keys, logs, metrics
from webapp.connections import get_docker, get_redis
from webapp.extensions import db
from webapp.heartbeats import process_name
from webapp.livelog import LeaseLost, last_published_seq
from webapp.models import Run, RunLogBlock, Team
from webapp.models.base import utcnow
from webapp.services import lifecycle, pools, quotas
from webapp.services.dispatch import CANCEL_PLAIN
from webapp.services.registry import auth_for_image
from webapp.imageref import registry_host

from . import engine, fence, hosts, images
from .executor import DockerExecutor
from .logsink import DailyOutput, Fence, LogSink, SinkError, Skip
from webapp.vocabulary import RunStatus

log = logging.getLogger(__name__)

STOP_GRACE_SEC = 10
IMAGE_ACCESS_RECHECK_SEC = 600  # a project's access to a registry image is asked again after this
IMAGE_ACCESS_REMEMBER_SEC = 30 * 86400  # ... and trusted when the registry cannot be reached
ENGINE_DOWN = "the Docker engine is not answering"
STORE_FAILED = "internal error while storing output"
POLL_SEC = 0.1
ATTACH_WAIT_SEC = 10.0  # the engine's attach event, before a start (_attach_and_start)
CANCEL_DB_EVERY_SEC = 0.5  # a cancel reaches a running worker within this even without Redis


class Lease:
    """The Redis half of a run's ownership: a lock with this worker's token, renewed by a thread.

    The lock may vanish (Redis flushed or restarted): the owner takes it back with the same token,
    since the database still names it. It is lost only when another token holds it, and then
    `lost` is set for the supervisor to see."""

    def __init__(self, public_id: str):
        self.ttl = current_app.config["RUN_LEASE_TTL_SEC"]
        self.redis = get_redis()
        self.token = secrets.token_hex(16)
        self.lock = self.redis.lock(keys.run_lease(public_id), timeout=self.ttl, blocking=False, thread_local=False)
        self.public_id = public_id
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lease-{public_id}")

    def acquire(self) -> bool:
        try:
            return bool(self.lock.acquire(token=self.token))
        except redis.RedisError:
            log.warning("could not take the lease of %s: Redis is not answering", self.public_id)
            return False

    def start(self) -> None:
        self._thread.start()

    def _beat(self) -> None:
        warned = False
        while not self._stop.wait(self.ttl / 5):
            try:
                try:
                    self.lock.extend(self.ttl, replace_ttl=True)
                except LockError:  # not ours any more: gone with Redis's data, or another's
                    if not self.lock.acquire(token=self.token):
                        log.warning("run %s: another worker holds its lease; letting go", self.public_id)
                        self.lost.set()
                        return
                warned = False
            except redis.RedisError as e:
                if not warned:
                    log.warning("could not renew the lease of %s: %s", self.public_id, e)
                    warned = True

    def release(self) -> None:
        self._stop.set()
        try:
            self.lock.release()
        except (LockError, redis.RedisError):
            pass


def execute_run(public_id: str) -> None:
    """The RQ entry point's body: run `public_id` if it is still queued, else do nothing."""
    lease = Lease(public_id)
    if not lease.acquire():
        return
    try:
        run = claim(public_id, lease.token)
        if run is None:
            return
        lease.start()
        with logs.about_run(run), _rows_kept():
            Execution(run, lease).fresh()
    finally:
        lease.release()


@contextmanager
def _rows_kept():
    """An execution's many small commits (container id, start, log blocks) do not expire the run
    it loaded: every field it reads from the row is fixed when the run is made (image, command,
    timeout, instant), and what changes meanwhile (a cancel, the status) is read by a query of its
    own. Otherwise each commit cost a reload of the row on the way to the container's start.
    `_finish` expires everything before the terminal write, as any commit did before."""
    session = db.session()
    kept, session.expire_on_commit = session.expire_on_commit, False
    try:
        yield
    finally:
        session.expire_on_commit = kept


def claim(public_id: str, token: str) -> Run | None:
    """queued -> running, owned by `token`, unless the run's team already has TEAM_MAX_RUNNING
    runs running: then it goes back to the scheduler's sweep, which hands it over again, so one
    team's burst cannot hold every slot while other teams' runs wait. Returns the claimed run,
    read back by the claim's own statement."""
    team_id = db.session.scalar(select(Run.team_id).where(Run.public_id == public_id, Run.status == RunStatus.QUEUED))
    if team_id is None:
        db.session.commit()
        return None
    if db.engine.dialect.name == "postgresql":  # claims of one team, one at a time: the count holds
        db.session.execute(select(Team.id).where(Team.id == team_id).with_for_update())
    running = (select(func.count()).select_from(Run)
               .where(Run.team_id == team_id, Run.status == RunStatus.RUNNING).scalar_subquery())
    claimed = db.session.scalars(
        update(Run).where(Run.public_id == public_id, Run.status == RunStatus.QUEUED,
                          running < current_app.config["TEAM_MAX_RUNNING"])
        .values(status=RunStatus.RUNNING, owner_token=token, worker_name=process_name(), worker_host=hosts.current())
        .returning(Run), execution_options={"populate_existing": True}).one_or_none()
    if claimed is None:
        db.session.execute(update(Run).where(Run.public_id == public_id, Run.status == RunStatus.QUEUED)
                           .values(enqueued_at=None))
    db.session.commit()
    return claimed


def resume_run(public_id: str) -> None:
    """Take over a running run whose worker is gone, and finish it by its container's state."""
    lease = Lease(public_id)
    if not lease.acquire():
        return
    try:
        run = db.session.query(Run).filter_by(public_id=public_id).first()
        if run is None or run.status != RunStatus.RUNNING:
            db.session.commit()
            return
        previous = run.owner_token
        took = db.session.execute(
            update(Run).where(Run.id == run.id, Run.status == RunStatus.RUNNING,
                              Run.owner_token == previous if previous else Run.owner_token.is_(None))
            .values(owner_token=lease.token, worker_name=process_name())).rowcount
        db.session.commit()
        if not took:
            return
        db.session.refresh(run)
        lease.start()
        with logs.about_run(run), _rows_kept():
            Execution(run, lease).resume()
    finally:
        lease.release()


class Execution:
    def __init__(self, run: Run, lease: Lease):
        self.run = run
        self.lease = lease
        self.token = lease.token
        self.api = None
        self.executor: DockerExecutor | None = None
        self.container_id: str | None = run.container_id
        self.digest: str | None = None
        self.image_id: str | None = None  # the image checked by _prepare_image: the one created
        self.finished = False
        self.stream = None
        # Bytes the reader has taken from the engine, stored or skipped: what "progress" means to
        # _drain (the sink's seq stands still while a re-attached reader skips what is stored, or
        # while lines past the cap go to the in-memory tail).
        self.bytes_read = 0
        self.letting_go = False
        cfg = current_app.config
        self.redis = get_redis()
        self.cancel_seen = run.cancel_requested_at is not None
        self.cancel_reason = run.cancel_reason
        self.next_db_check = time.monotonic() + CANCEL_DB_EVERY_SEC  # the row was just read
        self.redis_warned = False
        self.db_warned = False
        fence = Fence(lease.token, cfg["RUN_LEASE_TTL_SEC"], self.redis, lease.lost)
        stored_lines = 0
        if run.log_bytes:  # a take-over: the head already holds lines
            stored_lines = db.session.scalar(
                select(func.coalesce(func.sum(RunLogBlock.last_seq - RunLogBlock.first_seq + 1), 0))
                .where(RunLogBlock.run_id == run.id))
        self.sink = LogSink(run, fence, cap_bytes=cfg["LOG_CAP_BYTES"], tail_bytes=cfg["LOG_TAIL_BYTES"],
                            batch_seconds=cfg["LOG_BATCH_SECONDS"], live_maxlen=cfg["LIVE_STREAM_MAXLEN"],
                            cap_lines=cfg["LOG_CAP_LINES"], stored_lines=stored_lines,
                            outage_sec=cfg["STORAGE_OUTAGE_SEC"],
                            daily=DailyOutput(run.team_id, quotas.limits_for(run.team_id)["outputBytesPerDay"],
                                              self.redis))
        self.sink.start_after(db.session.scalar(select(func.max(RunLogBlock.last_seq))
                                                .where(RunLogBlock.run_id == run.id)))
        db.session.commit()

    # -- entry points --------------------------------------------------------------------------
    def fresh(self) -> None:
        self._guarded(self._fresh)

    def resume(self) -> None:
        self._guarded(self._resume)

    def _guarded(self, body) -> None:
        try:
            body()
        except LeaseLost:
            self._let_go()
        except engine.RunFailure as e:
            self._finish(RunStatus.FAILED, error=str(e))
        except SinkError:
            if self.container_id and self.executor is not None:
                self._stop_container()  # failed for storage: stopped, not left running unwatched
            self._finish(RunStatus.FAILED, error=STORE_FAILED, store=False)
        except (requests.exceptions.ConnectionError, DockerException) as e:
            if engine.unreachable(e):
                self._finish(RunStatus.FAILED, error=ENGINE_DOWN)
            else:
                self._finish(RunStatus.FAILED, error=f"the Docker engine failed: {getattr(e, 'explanation', None) or str(e)[:300]}")
        except Exception as e:
            log.exception("run %s crashed", self.run.public_id)
            self._finish(RunStatus.FAILED, error=f"internal error while running: {type(e).__name__}")
        finally:
            self._remove()

    def _connect(self) -> None:
        self.api = get_docker(timeout=120).api
        self.executor = DockerExecutor(self.api)
        self.sink.engine_clock = engine.engine_clock(self.api)

    def _fresh(self) -> None:
        if not pools.may_use(self.run.team_id, self.run.worker_pool):  # granted when made; maybe not now
            raise engine.RunFailure(f"not started: the worker pool {self.run.worker_pool} is not this team's")
        self._connect()
        with self.executor.exit_watch(self.run.public_id) as watch:  # subscribes while we pull and create
            self._prepare_image()
            if self._cancel_requested():
                return self._finish(RunStatus.CANCELLED, error=self.cancel_reason)
            self._create()
            faults.stop_here("after-create")
            self._attach_and_start(watch)

    def _attach_and_start(self, watch: engine.ExitWatch) -> None:
        """A created container: attach, wait for the run's instant if it is still to come, start,
        supervise to the end. `watch` is the exit's subscription, made before the start. The start
        waits for the engine's `attach` event: before it, the attach's replay of the (empty) log
        could still read what the container writes, which then came twice (seen under load)."""
        watch.subscribed()
        reader = self._read(self.executor.attach(self.container_id))
        if not watch.attached.wait(ATTACH_WAIT_SEC):
            log.warning("no attach event for %s within %g s; starting anyway", self.run.public_id, ATTACH_WAIT_SEC)
        cancelled = self._until_due()
        if cancelled:
            return self._finish(RunStatus.CANCELLED, error=cancelled)
        self._start()
        self._supervise(reader, time.monotonic() + self.run.timeout_sec, watch=watch)

    def _resume(self) -> None:
        """By the container's state: `created` (the worker died before starting it) is started
        now (at its instant if it was prepared ahead); a running one is re-attached; an exited one is completed from its exit code and
        output; none at all means the worker was lost before anything ran."""
        self._connect()
        container = self.executor.find(self.run.public_id, self.container_id)
        if container is None:
            metrics.count("runs_recovered", "failed")
            return self._finish(RunStatus.FAILED, error=self._fenced() or "worker lost")
        state = container["State"]
        status = state.get("Status")
        if container["Id"] != self.container_id:
            self.container_id = container["Id"]
            self._stored(lambda: lifecycle.owned_update(self.run, self.token, container_id=self.container_id))
        published = self._published_seq()
        log.info("taking over %s: container %s, output read up to %s, live viewers have up to seq %s",
                 self.run.public_id, status, self.sink.stream_bytes, published)
        notice = "the worker handling this run stopped; another worker re-attached"
        metrics.count("runs_recovered", "completed" if status in ("exited", "dead") else
                      "reattached" if status in ("created", "running", "paused", "restarting") else "failed")
        if status == "created":
            self.sink.system_after(notice + " and started the container", published)
            if self._cancel_requested():
                return self._finish(RunStatus.CANCELLED, error=self.cancel_reason)
            with self.executor.exit_watch(self.run.public_id) as watch:
                self._attach_and_start(watch)
        elif status in ("running", "paused", "restarting"):
            self.sink.system_after(notice, published)
            output = self.executor.follow(self.container_id)
            faults.wait_here("reader-lags", until=lambda: self.executor.state(self.container_id)["Status"] != "running")
            reader = self._read(output, skip=dict(self.sink.stream_bytes))
            self._supervise(reader, time.monotonic() + self._remaining(), followed=True)
        elif status in ("exited", "dead"):
            self.sink.system_after(notice, published)
            self._read_rest()
            self._complete_exited(state)
        else:  # removing
            self._finish(RunStatus.FAILED, error="worker lost")

    # -- steps ---------------------------------------------------------------------------------
    def _published_seq(self) -> int | None:
        try:
            return last_published_seq(self.run.public_id, redis=self.redis)
        except redis.RedisError:
            return None

    def _remaining(self) -> float:
        started = self.run.started_at or utcnow()
        return max(0.0, (started + timedelta(seconds=self.run.timeout_sec) - utcnow()).total_seconds())

    def _prepare_image(self) -> None:
        """Pull by the contract's policy. A local copy of an image that came from a registry is
        used only once that registry has accepted this project's credentials for it (the pull,
        or a manifest check): one team's private image on the engine is not another's."""
        image = self.run.image
        project_id = self.run.workflow.project_id
        local = engine.cached_image(self.api, image)
        auth = auth_for_image(project_id, image)
        if local is None or engine.always_pull(image):
            try:
                engine.pull(self.api, image, auth)
            except engine.RunFailure as e:
                if local is None:
                    raise engine.RunFailure(f"could not pull the image {image}: {e}") from None
                if engine.from_registry(local, image):
                    self._require_access(image, auth, local, pulled=str(e))
                self.sink.system(f"pulling {image} failed ({e}); running the local copy")
            else:
                local = engine.local_image(self.api, image)
                if local is None:
                    raise engine.RunFailure(f"the image {image} is not on the engine after the pull")
                self._remember_access(project_id, image, local)
        elif engine.from_registry(local, image):
            self._require_access(image, auth, local)
        self.digest = engine.digest_of(local, image)
        self.image_id = local["Id"]
        images.record_use(self.api, self.image_id)

    def _access_key(self, project_id: int, image: str, local: dict) -> str:
        return keys.image_access(project_id, local['Id'], image)

    def _remember_access(self, project_id: int, image: str, local: dict) -> None:
        try:
            self.redis.set(self._access_key(project_id, image, local), "1", ex=IMAGE_ACCESS_REMEMBER_SEC)
        except redis.RedisError:
            pass

    def _require_access(self, image: str, auth: dict | None, local: dict, pulled: str | None = None) -> None:
        """The registry's yes for this project, asked at most every few minutes per image."""
        project_id = self.run.workflow.project_id
        key = self._access_key(project_id, image, local)
        try:
            confirmed_at = self.redis.get(key)
            ttl = self.redis.ttl(key) if confirmed_at else -2
        except redis.RedisError:
            confirmed_at, ttl = None, -2
        if confirmed_at and IMAGE_ACCESS_REMEMBER_SEC - ttl < IMAGE_ACCESS_RECHECK_SEC:
            return
        host = registry_host(image)
        if pulled is not None and engine.refused(pulled):
            problem = pulled
        else:
            try:
                engine.check_access(self.api, image, auth)
                self._remember_access(project_id, image, local)
                return
            except engine.RunFailure as e:
                problem = str(e)
        if not engine.refused(problem) and confirmed_at:
            self.sink.system(f"the registry {host} could not be asked about {image} ({problem}); this "
                             "project was allowed to pull it before, so the local copy runs")
            return
        raise engine.RunFailure(f"the registry {host} did not let this project use {image} ({problem}); "
                                "the copy on the engine is not used without the registry's yes")

    def _create(self) -> None:
        self.container_id = self.executor.submit(self.run, image_id=self.image_id)
        self._stored(lambda: lifecycle.owned_update(self.run, self.token, container_id=self.container_id))

    def _until_due(self) -> str | None:
        """A run handed over ahead of its instant (a cron fire made SCHEDULE_LEAD_SEC early: `due_at`
        still to come) waits for it on the monotonic clock, its container created and attached, then
        starts on time. Only a cancel stops it meanwhile: the fire is made, and like any run in
        flight it outlives a later change or delete of its workflow. Returns the cancel's reason,
        or None to start."""
        wait = (self.run.due_at - utcnow()).total_seconds()
        if wait <= 0:
            return None
        start_at = time.monotonic() + wait
        while start_at > time.monotonic():
            if self.lease.lost.is_set():
                raise LeaseLost(self.run.public_id)
            if self._cancel_requested():
                return self.cancel_reason or "cancelled before its instant"
            # read the clock after the checks: they may have taken longer than what was left
            time.sleep(max(0.0, min(start_at - time.monotonic(), POLL_SEC)))
        return None

    def _start(self) -> None:
        if fence.fenced(self._host()):
            raise engine.RunFailure("not started: this worker host could not record its heartbeat for "
                                    f"{fence.fence_sec():g} s (self-fencing, HOST_FENCE_SEC)")
        self.executor.start(self.container_id)
        started = utcnow()
        self._stored(lambda: lifecycle.owned_update(self.run, self.token, started_at=started))
        run = self.run
        metrics.observe("run_queue_wait_seconds", run.team_id, (started - run.due_at).total_seconds())
        if run.scheduled_for is not None:
            metrics.observe("schedule_lag_seconds", run.team_id, (started - run.scheduled_for).total_seconds())

    def _read(self, output: engine.Output, skip: dict | None = None) -> threading.Thread:
        """Feed the sink from `output` on a thread of its own, skipping the bytes already stored."""
        self.stream = output
        sink = self.sink
        skipping = Skip(skip, sink.read_at, sink)

        def read():
            try:
                for name, chunk, logged_at in output:
                    self.bytes_read += len(chunk)
                    chunk = skipping.rest(name, chunk, logged_at)
                    if not chunk:
                        continue
                    sink.feed(name, chunk)
                    faults.raise_here("reader")
            except Exception as e:
                if self.letting_go or sink.fence.lost.is_set():
                    return
                log.exception("reading the output of %s failed", self.run.public_id)
                sink.system(f"reading the container's output failed ({type(e).__name__}: {str(e)[:200]}); "
                            "output written after this point may be missing from the log")

        thread = threading.Thread(target=read, daemon=True, name=f"reader-{self.run.public_id}")
        thread.start()
        return thread

    def _supervise(self, reader: threading.Thread, deadline: float, followed: bool = False,
                   watch: engine.ExitWatch | None = None) -> None:
        """Wait for the exit while flushing logs; enforce the deadline and cancel requests.
        `followed`: the reader follows the engine's log (a re-attached running container), which
        may end short of the exit's output; the rest is then read once the container has exited.
        `watch`: the container's exit event, subscribed before it started (else `wait` is polled)."""
        outcome, code, error = None, None, None
        while True:
            if self.lease.lost.is_set():
                raise LeaseLost(self.run.public_id)
            code = self._exit_within(POLL_SEC, watch)
            if code is not None:
                break
            if self.sink.due():
                self.sink.flush()
            if self._cancel_requested():
                self._stop_container()
                outcome, error = RunStatus.CANCELLED, self.cancel_reason
                break
            if time.monotonic() >= deadline:
                if self._kill_at_deadline():
                    outcome = RunStatus.TIMED_OUT
                    error = f"the run exceeded its timeout of {self.run.timeout_sec} s; the container was killed"
                break
        if code is None:
            code = self._exit_code()
        self._drain(reader)
        if followed and not reader.is_alive():
            self._read_rest()
        if outcome is None:
            outcome = RunStatus.SUCCEEDED if code == 0 else RunStatus.FAILED
            if code != 0:
                error = self._fenced() or self._oom_error()
        self.sink.close()
        self._finish(outcome, exit_code=code, error=error, store=False)

    def _exit_within(self, seconds: float, watch: engine.ExitWatch | None) -> int | None:
        """The exit code if the container exits within `seconds`, else None."""
        if watch is not None and not watch.broken:
            watch.ended.wait(seconds)
            if watch.code is not None or not watch.broken:
                return watch.code
        return self.executor.wait(self.container_id, seconds)

    def _kill_at_deadline(self) -> bool:
        """SIGKILL at the deadline; False when the container had exited on its own meanwhile
        (its real exit is then recorded, not a failure of the engine)."""
        return self.executor.kill(self.container_id)

    def _complete_exited(self, state: dict) -> None:
        code = state.get("ExitCode")
        if self._cancel_requested():
            return self._finish(RunStatus.CANCELLED, exit_code=code, error=self.cancel_reason)
        finished = engine.parse_time(state.get("FinishedAt"))
        started = self.run.started_at
        if started and finished and finished > started + timedelta(seconds=self.run.timeout_sec):
            return self._finish(RunStatus.TIMED_OUT, exit_code=code,
                                error=f"the run exceeded its timeout of {self.run.timeout_sec} s while no "
                                      "worker watched it")
        self._finish(RunStatus.SUCCEEDED if code == 0 else RunStatus.FAILED, exit_code=code,
                     error=None if code == 0 else self._fenced() or self._oom_error())

    def _host(self) -> str:
        return self.run.worker_host or hosts.current()

    def _fenced(self) -> str | None:
        """Why this host stopped the run's container itself (jobs/fence.py), said in its log too;
        None if it did not."""
        text = fence.read_note(self._host(), self.run.public_id)
        if text is not None:
            self.sink.system(text)
        return text

    def _oom_error(self) -> str | None:
        """The exit code of an out-of-memory kill (137) does not say why; the engine does."""
        try:
            killed = self.executor.state(self.container_id).get("OOMKilled")
        except (APIError, requests.exceptions.RequestException):
            return None
        if not killed:
            return None
        limit = f" (its limit is {self.run.memory_mb} MB)" if self.run.memory_mb else ""
        return f"the container ran out of memory{limit} and was killed"

    def _drain(self, reader: threading.Thread) -> None:
        """Let the reader finish what the container wrote, flushing so that it never waits on us.
        Gives up only when the reader takes no byte from the engine for 10 s."""
        last, still = -1, time.monotonic()
        while reader.is_alive():
            reader.join(POLL_SEC)
            if self.lease.lost.is_set():
                raise LeaseLost(self.run.public_id)
            if self.sink.due():
                self.sink.flush()
            if self.bytes_read != last:
                last, still = self.bytes_read, time.monotonic()
            elif time.monotonic() - still > 10:
                log.warning("output reader of %s stalled; closing", self.run.public_id)
                self.sink.system("the container's output stopped arriving; the log may end early")
                break

    def _read_rest(self) -> None:
        """An exited container's output past the bytes already taken, in the order written."""
        try:
            output = self.executor.read(self.container_id)
        except NotFound:
            self.sink.system("the container was removed before the rest of its output was read; "
                             "the log may end early")
            return
        self._drain(self._read(output, skip=dict(self.sink.stream_bytes)))

    def _stop_container(self) -> None:
        try:
            self.executor.stop(self.container_id, STOP_GRACE_SEC)
        except APIError:
            log.exception("stopping the container of %s failed", self.run.public_id)
            self.sink.system("stopping the container failed; it is removed instead")

    def _exit_code(self) -> int | None:
        try:
            code = self.executor.wait(self.container_id, STOP_GRACE_SEC + 5)
        except Exception as e:
            log.exception("reading the exit code of %s failed", self.run.public_id)
            code, problem = None, type(e).__name__
        else:
            problem = "no exit within the stop's grace"
        if code is None:
            self.sink.system(f"could not read the container's exit code ({problem})")
        return code

    def _cancel_requested(self) -> bool:
        """Redis is the fast path (checked every poll); the database, the record, is read at
        least every half second, so a cancel survives a Redis flush or restart."""
        if self.cancel_seen:
            return True
        public_id = self.run.public_id
        try:
            value = self.redis.get(keys.run_cancel(public_id))
            if value is not None:
                self.cancel_seen = True
                self.cancel_reason = None if value.decode() == CANCEL_PLAIN else value.decode()
                return True
            self.redis_warned = False
        except redis.RedisError as e:
            if not self.redis_warned:
                self.redis_warned = True
                log.warning("cancel check of %s through Redis failed (%s); using the database", public_id, e)
        now = time.monotonic()
        if now >= self.next_db_check:
            self.next_db_check = now + CANCEL_DB_EVERY_SEC
            try:
                row = db.session.execute(select(Run.cancel_requested_at, Run.cancel_reason)
                                         .where(Run.id == self.run.id)).one()
                db.session.commit()
            except Exception as e:  # the database away: Redis still carries cancels meanwhile
                db.session.rollback()
                if not self.db_warned:
                    self.db_warned = True
                    log.warning("cancel check of %s in the database failed (%s); trying again", public_id,
                                type(e).__name__)
                return False
            self.db_warned = False
            if row.cancel_requested_at is not None:
                self.cancel_seen, self.cancel_reason = True, row.cancel_reason
        return self.cancel_seen

    def _finish(self, status: str, *, exit_code=None, error=None, store: bool = True) -> None:
        db.session.expire_all()  # what follows the terminal write (retry, alerts) reads fresh rows
        if store:
            try:
                self.sink.close()
            except LeaseLost:
                return self._let_go()
            except SinkError:
                error = error or STORE_FAILED
        self.finished = self._stored(lambda: lifecycle.complete(
            self.run, status, exit_code=exit_code, error=error, image_digest=self.digest, expect=(RunStatus.RUNNING,),
            owner=self.token))
        if not self.finished:
            return self._let_go()
        fence.drop_note(self._host(), self.run.public_id)  # told: in the log and the error

    def _stored(self, write):
        """`write()` (a status write), tried again with backoff while the database cannot be reached,
        for up to STORAGE_OUTAGE_SEC; LeaseLost and refusals are not retried."""
        deadline = time.monotonic() + current_app.config["STORAGE_OUTAGE_SEC"]
        delay = 0.25
        while True:
            try:
                return write()
            except (OperationalError, InterfaceError) as e:
                db.session.rollback()
                if time.monotonic() + delay > deadline or self.lease.lost.is_set():
                    raise
                log.warning("run %s: the database did not take a write (%s); trying again in %.2f s",
                            self.run.public_id, type(e).__name__, delay)
                time.sleep(delay)
                delay = min(5.0, delay * 2)

    def _let_go(self) -> None:
        """Another worker owns the run now: stop reading, write nothing, leave the container."""
        self.letting_go = True
        self.finished = False
        log.warning("run %s: lease lost; another worker owns it now", self.run.public_id)
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass

    def _remove(self) -> None:
        """Remove the container of a run this worker finished (off the slot's path: the remover
        thread does it). If this process is being stopped mid-run, or lost the run, the container
        is left for its owner or its host's keeper."""
        if not self.container_id or self.executor is None or not self.finished:
            return
        self.executor.remove_later(self.container_id)
