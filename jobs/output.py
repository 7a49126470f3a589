"""A run's output on its way from the engine to the log: the sink it is fed to (webapp/runoutput/store.py),
and the reader thread that takes it from the container, skipping what a previous owner stored."""
from __future__ import annotations

import logging
import threading
import time

import redis
from docker.errors import NotFound
from flask import current_app
from sqlalchemy import func, select

from webapp import faults
from webapp.extensions import db
from webapp.models import Run, RunLogBlock
from webapp.runoutput.store import DailyOutput, Fence, LogSink, Skip
from webapp.runoutput.stream import LeaseLost
from webapp.services import quotas

from . import engine

log = logging.getLogger(__name__)

POLL_SEC = 0.1
STALL_SEC = 10.0  # a reader that takes no byte for this long is given up


def open_sink(run: Run, token: str, lost: threading.Event, store: redis.Redis) -> LogSink:
    """The sink of `run`, owned by `token`, numbering on from what is stored (a take-over)."""
    cfg = current_app.config
    fence = Fence(token, cfg["RUN_LEASE_TTL_SEC"], store, lost)
    stored_lines = 0
    if run.log_bytes:  # a take-over: the head already holds lines
        stored_lines = db.session.scalar(
            select(func.coalesce(func.sum(RunLogBlock.last_seq - RunLogBlock.first_seq + 1), 0))
            .where(RunLogBlock.run_id == run.id))
    sink = LogSink(run, fence, cap_bytes=cfg["LOG_CAP_BYTES"], tail_bytes=cfg["LOG_TAIL_BYTES"],
                   batch_seconds=cfg["LOG_BATCH_SECONDS"], live_maxlen=cfg["LIVE_STREAM_MAXLEN"],
                   cap_lines=cfg["LOG_CAP_LINES"], stored_lines=stored_lines, outage_sec=cfg["STORAGE_OUTAGE_SEC"],
                   daily=DailyOutput(run.team_id, quotas.limits_for(run.team_id)["outputBytesPerDay"], store))
    sink.start_after(db.session.scalar(select(func.max(RunLogBlock.last_seq)).where(RunLogBlock.run_id == run.id)))
    db.session.commit()
    return sink


class Reader:
    """Takes a container's output into the sink on a thread of its own."""

    def __init__(self, sink: LogSink, public_id: str):
        self.sink, self.public_id = sink, public_id
        # Bytes taken from the engine, stored or skipped: what "progress" means to `drain` (the
        # sink's seq stands still while a re-attached reader skips what is stored, or while lines
        # past the cap go to the in-memory tail).
        self.bytes_read = 0
        self.stream: engine.Output | None = None
        self.letting_go = False

    def read(self, output: engine.Output, skip: dict | None = None) -> threading.Thread:
        """Feed the sink from `output`, skipping the bytes already stored."""
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
                log.exception("reading the output of %s failed", self.public_id)
                sink.system(f"reading the container's output failed ({type(e).__name__}: {str(e)[:200]}); "
                            "output written after this point may be missing from the log")

        thread = threading.Thread(target=read, daemon=True, name=f"reader-{self.public_id}")
        thread.start()
        return thread

    def drain(self, reader: threading.Thread) -> None:
        """Let the reader finish what the container wrote, flushing so that it never waits on us.
        Gives up only when the reader takes no byte from the engine for STALL_SEC."""
        last, still = -1, time.monotonic()
        while reader.is_alive():
            reader.join(POLL_SEC)
            if self.sink.fence.lost.is_set():
                raise LeaseLost(self.public_id)
            if self.sink.due():
                self.sink.flush()
            if self.bytes_read != last:
                last, still = self.bytes_read, time.monotonic()
            elif time.monotonic() - still > STALL_SEC:
                log.warning("output reader of %s stalled; closing", self.public_id)
                self.sink.system("the container's output stopped arriving; the log may end early")
                break

    def read_rest(self, executor, container_id: str) -> None:
        """An exited container's output past the bytes already taken, in the order written."""
        try:
            output = executor.read(container_id)
        except NotFound:
            self.sink.system("the container was removed before the rest of its output was read; "
                             "the log may end early")
            return
        self.drain(self.read(output, skip=dict(self.sink.stream_bytes)))

    def let_go(self) -> None:
        """Stop reading at once: another worker owns the run now."""
        self.letting_go = True
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass
