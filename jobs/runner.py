"""One run on the engine, its life from the claim to the clean-up: prepare the image, create,
attach, start, supervise to the exit, record, remove. Its rooms: jobs/lease.py (who owns the run,
and what an owner may write), jobs/image_prep.py (the image), jobs/output.py (output from the
engine to the log), jobs/deadlines.py (cancel and the clock), jobs/exits.py (how a container
ended), jobs/executor.py and jobs/engine.py (the engine itself)."""
from __future__ import annotations

import logging
import time

import requests
from docker.errors import DockerException

from webapp import faults, metrics, process_log
from webapp.connections import get_docker, get_redis
from webapp.extensions import db
from webapp.models import Run
from webapp.models.base import utcnow
from webapp.runoutput.store import SinkError
from webapp.runoutput.stream import LeaseLost, last_published_seq
from webapp.services import lifecycle, pools
from webapp.vocabulary import RunStatus

from . import deadlines, engine, exits, fence, hosts
from .executor import DockerExecutor
from .image_prep import prepare_image
from .lease import Lease, claim, owned_write, rows_kept, take_over
from .output import Reader, open_sink

log = logging.getLogger(__name__)

ENGINE_DOWN = "the Docker engine is not answering"
STORE_FAILED = "internal error while storing output"
ATTACH_WAIT_SEC = 10.0  # the engine's attach event, before a start (_attach_and_start)


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
        with process_log.about_run(run), rows_kept():
            Execution(run, lease).fresh()
    finally:
        lease.release()


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
        if not take_over(run, lease.token):
            return
        db.session.refresh(run)
        lease.start()
        with process_log.about_run(run), rows_kept():
            Execution(run, lease).resume()
    finally:
        lease.release()


class Execution:
    def __init__(self, run: Run, lease: Lease):
        self.run, self.lease, self.token = run, lease, lease.token
        self.api = None
        self.executor: DockerExecutor | None = None
        self.container_id: str | None = run.container_id
        self.digest: str | None = None
        self.image_id: str | None = None  # the image prepared: the one the container is created from
        self.finished = False
        self.redis = get_redis()
        self.cancel = deadlines.CancelWatch(run, self.redis)
        self.sink = open_sink(run, lease.token, lease.lost, self.redis)
        self.reader = Reader(self.sink, run.public_id)

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
                exits.stop(self.executor, self.container_id, self.run.public_id, self.sink.system)  # failed for storage: stopped, not left running unwatched
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
            prepared = prepare_image(self.api, self.run.workflow.project_id, self.run.image, self.redis,
                                     self.sink.system)
            self.image_id, self.digest = prepared.image_id, prepared.digest
            if self.cancel.requested():
                return self._finish(RunStatus.CANCELLED, error=self.cancel.reason)
            self._create()
            faults.stop_here("after-create")
            self._attach_and_start(watch)

    def _attach_and_start(self, watch: engine.ExitWatch) -> None:
        """A created container: attach, wait for the run's instant if it is still to come, start,
        supervise to the end. `watch` is the exit's subscription, made before the start. The start
        waits for the engine's `attach` event: before it, the attach's replay of the (empty) log
        could still read what the container writes, which then came twice (seen under load)."""
        watch.subscribed()
        reader = self.reader.read(self.executor.attach(self.container_id))
        if not watch.attached.wait(ATTACH_WAIT_SEC):
            log.warning("no attach event for %s within %g s; starting anyway", self.run.public_id, ATTACH_WAIT_SEC)
        cancelled = deadlines.until_due(self.run, self.lease.lost, self.cancel)
        if cancelled:
            return self._finish(RunStatus.CANCELLED, error=cancelled)
        self._start()
        self._supervise(reader, time.monotonic() + self.run.timeout_sec, watch=watch)

    def _resume(self) -> None:
        """By the container's state: `created` (the worker died before starting it) is started
        now (at its instant if it was prepared ahead); a running one is re-attached; an exited one
        is completed from its exit code and output; none at all means the worker was lost before
        anything ran."""
        self._connect()
        container = self.executor.find(self.run.public_id, self.container_id)
        if container is None:
            metrics.count("runs_recovered", "failed")
            return self._finish(RunStatus.FAILED, error=exits.fenced(self._host(), self.run.public_id, self.sink.system) or "worker lost")
        state = container["State"]
        status = state.get("Status")
        if container["Id"] != self.container_id:
            self.container_id = container["Id"]
            owned_write(self.lease, lambda: lifecycle.owned_update(self.run, self.token, container_id=self.container_id))
        published = last_published_seq(self.run.public_id, redis=self.redis)
        log.info("taking over %s: container %s, output read up to %s, live viewers have up to seq %s",
                 self.run.public_id, status, self.sink.stream_bytes, published)
        notice = "the worker handling this run stopped; another worker re-attached"
        metrics.count("runs_recovered", "completed" if status in ("exited", "dead") else
                      "reattached" if status in ("created", "running", "paused", "restarting") else "failed")
        if status == "created":
            self.sink.system_after(notice + " and started the container", published)
            if self.cancel.requested():
                return self._finish(RunStatus.CANCELLED, error=self.cancel.reason)
            with self.executor.exit_watch(self.run.public_id) as watch:
                self._attach_and_start(watch)
        elif status in ("running", "paused", "restarting"):
            self.sink.system_after(notice, published)
            output = self.executor.follow(self.container_id)
            faults.wait_here("reader-lags", until=lambda: self.executor.state(self.container_id)["Status"] != "running")
            reader = self.reader.read(output, skip=dict(self.sink.stream_bytes))
            self._supervise(reader, time.monotonic() + deadlines.remaining(self.run), followed=True)
        elif status in ("exited", "dead"):
            self.sink.system_after(notice, published)
            self.reader.read_rest(self.executor, self.container_id)
            self._complete_exited(state)
        else:  # removing
            self._finish(RunStatus.FAILED, error="worker lost")

    def _create(self) -> None:
        self.container_id = self.executor.submit(self.run, image_id=self.image_id)
        owned_write(self.lease, lambda: lifecycle.owned_update(self.run, self.token, container_id=self.container_id))

    def _start(self) -> None:
        if fence.fenced(self._host()):
            raise engine.RunFailure("not started: this worker host could not record its heartbeat for "
                                    f"{fence.fence_sec():g} s (self-fencing, HOST_FENCE_SEC)")
        self.executor.start(self.container_id)
        started = utcnow()
        owned_write(self.lease, lambda: lifecycle.owned_update(self.run, self.token, started_at=started))
        run = self.run
        metrics.observe("run_queue_wait_seconds", run.team_id, (started - run.due_at).total_seconds())
        if run.scheduled_for is not None:
            metrics.observe("schedule_lag_seconds", run.team_id, (started - run.scheduled_for).total_seconds())

    def _supervise(self, reader, deadline: float, followed: bool = False,
                   watch: engine.ExitWatch | None = None) -> None:
        """Wait for the exit while flushing logs; enforce the deadline and cancel requests.
        `followed`: the reader follows the engine's log (a re-attached running container), which
        may end short of the exit's output; the rest is then read once the container has exited.
        `watch`: the container's exit event, subscribed before it started (else `wait` is polled)."""
        outcome, code, error = None, None, None
        while True:
            if self.lease.lost.is_set():
                raise LeaseLost(self.run.public_id)
            code = self._exit_within(deadlines.TICK_SEC if self.sink.idle() else deadlines.POLL_SEC, watch)
            if code is not None:
                break
            if self.sink.due():
                self.sink.flush()
            if self.cancel.requested():
                exits.stop(self.executor, self.container_id, self.run.public_id, self.sink.system)
                outcome, error = RunStatus.CANCELLED, self.cancel.reason
                break
            if time.monotonic() >= deadline:
                if self.executor.kill(self.container_id):  # False: it had exited on its own meanwhile
                    outcome, error = RunStatus.TIMED_OUT, deadlines.timed_out(self.run)
                break
        if code is None:
            code = exits.exit_code(self.executor, self.container_id, self.run.public_id, self.sink.system)
        self.reader.drain(reader)
        if followed and not reader.is_alive():
            self.reader.read_rest(self.executor, self.container_id)
        if outcome is None:
            outcome = RunStatus.SUCCEEDED if code == 0 else RunStatus.FAILED
            if code != 0:
                error = self._failure()
        self.sink.close()
        self._finish(outcome, exit_code=code, error=error, store=False)

    def _exit_within(self, seconds: float, watch: engine.ExitWatch | None) -> int | None:
        """The exit code if the container exits within `seconds`, else None."""
        if watch is not None and not watch.broken:
            watch.ended.wait(seconds)
            if watch.code is not None or not watch.broken:
                return watch.code
        return self.executor.wait(self.container_id, seconds)

    def _complete_exited(self, state: dict) -> None:
        code = state.get("ExitCode")
        if self.cancel.requested():
            return self._finish(RunStatus.CANCELLED, exit_code=code, error=self.cancel.reason)
        overran = deadlines.overran_unwatched(self.run, engine.parse_time(state.get("FinishedAt")))
        if overran:
            return self._finish(RunStatus.TIMED_OUT, exit_code=code, error=overran)
        self._finish(RunStatus.SUCCEEDED if code == 0 else RunStatus.FAILED, exit_code=code,
                     error=None if code == 0 else self._failure())

    def _host(self) -> str:
        return self.run.worker_host or hosts.current()

    def _failure(self) -> str | None:
        """The error of a non-zero exit: this host's fence stopped it, or it ran out of memory."""
        return (exits.fenced(self._host(), self.run.public_id, self.sink.system)
                or exits.oom_error(self.executor, self.container_id, self.run.memory_mb))





    def _finish(self, status: str, *, exit_code=None, error=None, store: bool = True) -> None:
        db.session.expire_all()  # what follows the terminal write (retry, alerts) reads fresh rows
        if store:
            try:
                self.sink.close()
            except LeaseLost:
                return self._let_go()
            except SinkError:
                error = error or STORE_FAILED
        self.finished = owned_write(self.lease, lambda: lifecycle.complete(
            self.run, status, exit_code=exit_code, error=error, image_digest=self.digest, expect=(RunStatus.RUNNING,),
            owner=self.token))
        if not self.finished:
            return self._let_go()
        fence.drop_note(self._host(), self.run.public_id)  # told: in the log and the error


    def _let_go(self) -> None:
        """Another worker owns the run now: stop reading, write nothing, leave the container."""
        self.finished = False
        log.warning("run %s: lease lost; another worker owns it now", self.run.public_id)
        self.reader.let_go()

    def _remove(self) -> None:
        """Remove the container of a run this worker finished (off the slot's path: the remover
        thread does it). If this process is being stopped mid-run, or lost the run, the container
        is left for its owner or its host's keeper."""
        if not self.container_id or self.executor is None or not self.finished:
            return
        self.executor.remove_later(self.container_id)
