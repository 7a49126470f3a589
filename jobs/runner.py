"""One run on the engine: claim, pull, create, attach, start, stream, wait, record, clean up."""
from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import requests
from docker.errors import APIError, DockerException, NotFound
from flask import current_app
from sqlalchemy import func, select, update

from webapp.connections import get_docker, get_redis
from webapp.extensions import db
from webapp.models import Run, RunLogChunk
from webapp.models.base import utcnow
from webapp.services import lifecycle
from webapp.services.registry import auth_for_image
from webapp.services.runs import CANCEL_PLAIN, cancel_key

from . import engine
from .logsink import LogSink

log = logging.getLogger(__name__)

STOP_GRACE_SEC = 10
ENGINE_DOWN = "the Docker engine is not answering"
POLL_SEC = 0.1


def lease_key(public_id: str) -> str:
    return f"run:{public_id}:lease"


class Lease:
    """A Redis key that says "a live worker owns this run"; it lapses soon after the worker dies."""

    def __init__(self, public_id: str, owner: str):
        self.key, self.owner = lease_key(public_id), owner
        self.ttl = current_app.config["RUN_LEASE_TTL_SEC"]
        self.every = self.ttl / 5
        self.redis = get_redis()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def acquire(self) -> bool:
        return bool(self.redis.set(self.key, self.owner, nx=True, ex=self.ttl))

    def start(self) -> None:
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.redis.set(self.key, self.owner, ex=self.ttl)
            except Exception:
                log.warning("could not renew the lease %s", self.key)

    def release(self) -> None:
        self._stop.set()
        try:
            if self.redis.get(self.key) == self.owner.encode():
                self.redis.delete(self.key)
        except Exception:
            pass


def worker_name() -> str:
    import os
    import socket
    return f"{socket.gethostname()}:{os.getpid()}"


def execute_run(public_id: str) -> None:
    """The RQ entry point's body: run `public_id` if it is still queued, else do nothing."""
    owner = worker_name()
    lease = Lease(public_id, owner)
    if not lease.acquire():
        return
    try:
        claimed = db.session.execute(
            update(Run).where(Run.public_id == public_id, Run.status == "queued")
            .values(status="running", worker_name=owner)).rowcount
        db.session.commit()
        if not claimed:
            return
        lease.start()
        run = db.session.query(Run).filter_by(public_id=public_id).one()
        Execution(run).fresh()
    finally:
        lease.release()


def resume_run(public_id: str) -> None:
    """Re-attach to the container of a run whose worker died, and finish the run normally."""
    lease = Lease(public_id, worker_name())
    if not lease.acquire():
        return
    try:
        run = db.session.query(Run).filter_by(public_id=public_id).first()
        if run is None or run.status != "running":
            return
        db.session.execute(update(Run).where(Run.id == run.id).values(worker_name=lease.owner))
        db.session.commit()
        lease.start()
        Execution(run).resume()
    finally:
        lease.release()


class Execution:
    def __init__(self, run: Run):
        self.run = run
        self.api = None
        self.container_id: str | None = run.container_id
        self.digest: str | None = None
        self.finished = False
        cfg = current_app.config
        self.redis = get_redis()
        next_seq = db.session.scalar(select(func.max(RunLogChunk.seq)).where(RunLogChunk.run_id == run.id))
        self.sink = LogSink(run, cfg["LOG_CAP_BYTES"], cfg["LOG_TAIL_BYTES"],
                            next_seq=(next_seq + 1) if next_seq is not None else 0,
                            stored_bytes=run.log_bytes,
                            stream_bytes={"stdout": run.stdout_bytes, "stderr": run.stderr_bytes})

    # -- entry points --------------------------------------------------------------------------
    def fresh(self) -> None:
        try:
            self.api = get_docker(timeout=120).api
            self._prepare_image()
            if self._cancel_requested():
                return self._finish("cancelled", error=self._cancel_reason())
            self._create()
            reader = self._attach(logs=True, skip=None)
            try:
                self.api.start(self.container_id)
            except APIError as e:
                raise engine.RunFailure(f"could not start the container: {engine.start_problem(e)}") from None
            lifecycle.mark_started(self.run, self.container_id)
            deadline = time.monotonic() + self.run.timeout_sec
            self._supervise(reader, deadline)
        except engine.RunFailure as e:
            self._finish("failed", error=str(e))
        except (requests.exceptions.ConnectionError, DockerException) as e:
            if engine.unreachable(e):
                self._finish("failed", error=ENGINE_DOWN)
            else:
                self._finish("failed", error=f"the Docker engine failed: {getattr(e, 'explanation', None) or str(e)[:300]}")
        except Exception as e:
            log.exception("run %s crashed", self.run.public_id)
            self._finish("failed", error=f"internal error while running: {type(e).__name__}")
        finally:
            self._remove()

    def resume(self) -> None:
        try:
            self.api = get_docker(timeout=120).api
            try:
                state = self.api.inspect_container(self.container_id)["State"]
            except (NotFound, TypeError, APIError):
                return self._finish("failed", error="worker lost")
            self.sink.system("the worker handling this run stopped; another worker re-attached")
            if state.get("Running"):
                skip = dict(self.sink.stream_bytes)
                reader = self._attach(logs=True, skip=skip)
                started = self.run.started_at or utcnow()
                remaining = (started + timedelta(seconds=self.run.timeout_sec) - utcnow()).total_seconds()
                self._supervise(reader, time.monotonic() + max(0.0, remaining))
            else:
                self._collect_exited()
                code = state.get("ExitCode")
                self._finish("succeeded" if code == 0 else "failed", exit_code=code)
        except Exception as e:
            log.exception("resume of %s crashed", self.run.public_id)
            self._finish("failed", error=f"worker lost ({type(e).__name__} while re-attaching)")
        finally:
            self._remove()

    # -- steps ---------------------------------------------------------------------------------
    def _prepare_image(self) -> None:
        image = self.run.image
        local = engine.local_image(self.api, image)
        if local is None or engine.always_pull(image):
            auth = auth_for_image(self.run.workflow.project_id, image)
            try:
                engine.pull(self.api, image, auth)
            except engine.RunFailure as e:
                if local is None:
                    raise engine.RunFailure(f"could not pull the image {image}: {e}") from None
                self.sink.system(f"pulling {image} failed ({e}); running the local copy")
            local = engine.local_image(self.api, image)
            if local is None:
                raise engine.RunFailure(f"the image {image} is not on the engine after the pull")
        self.digest = engine.digest_of(local, image)

    def _create(self) -> None:
        run = self.run
        try:
            created = self.api.create_container(
                run.image, command=run.command, environment=dict(run.env or {}),
                labels={engine.LABEL_RUN: run.public_id, engine.LABEL_INSTANCE: engine.instance_id()},
                host_config=engine.host_config(self.api, run.memory_mb, run.cpus),
                stdin_open=False, tty=False, detach=True,
            )
        except APIError as e:
            raise engine.RunFailure(f"could not create the container: {e.explanation or e}") from None
        self.container_id = created["Id"]
        db.session.execute(update(Run).where(Run.id == run.id).values(container_id=self.container_id))
        db.session.commit()

    def _attach(self, logs: bool, skip: dict | None) -> threading.Thread:
        """Read stdout and stderr apart, as they are written, on a thread that only feeds the sink."""
        stream = self.api.attach(self.container_id, stdout=True, stderr=True, stream=True,
                                 logs=logs, demux=True)
        sink = self.sink
        remaining = dict(skip or {"stdout": 0, "stderr": 0})

        def read():
            try:
                for out, err in stream:
                    for name, chunk in (("stdout", out), ("stderr", err)):
                        if not chunk:
                            continue
                        if remaining[name]:
                            cut = min(remaining[name], len(chunk))
                            remaining[name] -= cut
                            chunk = chunk[cut:]
                            if not chunk:
                                continue
                        sink.feed(name, chunk)
            except Exception as e:  # the stream ends with the container; wait() decides the outcome
                log.debug("attach stream of %s ended: %s", self.run.public_id, e)

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    def _supervise(self, reader: threading.Thread, deadline: float) -> None:
        """Wait for the exit while flushing logs; enforce the deadline and cancel requests."""
        outcome, code, error = None, None, None
        while True:
            try:
                code = self.api.wait(self.container_id, timeout=POLL_SEC)["StatusCode"]
                break
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                pass
            if self.sink.due():
                self.sink.flush()
            if self._cancel_requested():
                self._stop_container()
                outcome, error = "cancelled", self._cancel_reason()
                break
            if time.monotonic() >= deadline:
                self.api.kill(self.container_id)
                outcome = "timed_out"
                error = f"the run exceeded its timeout of {self.run.timeout_sec} s; the container was killed"
                break
        if outcome is not None:
            code = self._exit_code()
        self._drain(reader)
        self.sink.close()
        if outcome is None:
            outcome = "succeeded" if code == 0 else "failed"
            if code != 0:
                error = self._oom_error()
        self._finish(outcome, exit_code=code, error=error, closed=True)

    def _oom_error(self) -> str | None:
        """The exit code of an out-of-memory kill (137) does not say why; the engine does."""
        try:
            killed = self.api.inspect_container(self.container_id)["State"].get("OOMKilled")
        except (APIError, requests.exceptions.RequestException):
            return None
        if not killed:
            return None
        limit = f" (its limit is {self.run.memory_mb} MB)" if self.run.memory_mb else ""
        return f"the container ran out of memory{limit} and was killed"

    def _drain(self, reader: threading.Thread) -> None:
        """Let the reader finish what the container wrote, flushing so that it never waits on us.
        Gives up only when the reader makes no progress for 10 s."""
        last, still = -1, time.monotonic()
        while reader.is_alive():
            reader.join(POLL_SEC)
            if self.sink.due():
                self.sink.flush()
            if self.sink.seq != last:
                last, still = self.sink.seq, time.monotonic()
            elif time.monotonic() - still > 10:
                log.warning("output reader of %s stalled; closing", self.run.public_id)
                break

    def _collect_exited(self) -> None:
        for name in ("stdout", "stderr"):
            data = self.api.logs(self.container_id, stdout=name == "stdout", stderr=name == "stderr")
            data = data[self.sink.stream_bytes[name]:]
            if data:
                self.sink.feed(name, data)

    def _stop_container(self) -> None:
        try:
            self.api.stop(self.container_id, timeout=STOP_GRACE_SEC)
        except APIError:
            pass

    def _exit_code(self) -> int | None:
        try:
            return self.api.wait(self.container_id, timeout=STOP_GRACE_SEC + 5)["StatusCode"]
        except Exception:
            return None

    def _cancel_requested(self) -> bool:
        try:
            return bool(self.redis.exists(cancel_key(self.run.public_id)))
        except Exception:
            return False

    def _cancel_reason(self) -> str | None:
        try:
            value = self.redis.get(cancel_key(self.run.public_id))
        except Exception:
            return None
        return value.decode() if value and value.decode() != CANCEL_PLAIN else None

    def _finish(self, status: str, *, exit_code=None, error=None, closed: bool = False) -> None:
        self.finished = True
        if not closed:
            try:
                self.sink.close()
            except Exception:
                log.exception("could not store the last output of %s", self.run.public_id)
                db.session.rollback()
        lifecycle.complete(self.run, status, exit_code=exit_code, error=error, image_digest=self.digest)

    def _remove(self) -> None:
        """Remove the container of a finished run. If this process is being stopped mid-run, the
        container is left running for the sweeper to re-attach."""
        if not self.container_id or self.api is None or not self.finished:
            return
        try:
            self.api.remove_container(self.container_id, force=True)
        except NotFound:
            pass
        except Exception:
            log.warning("could not remove container %s; the reaper will", self.container_id)
