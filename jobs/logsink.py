"""Where a run's output goes: split into lines, published live at once, stored in batches, capped.

Past the cap the sink keeps the head (cap minus the tail size) and a rolling last 1 MiB, and at
close stores a notice of the bytes dropped between them. Memory stays bounded whatever the flood.

Every write is fenced by the owner's token: the live publish checks the Redis lease in the same
script that appends, and each database flush updates the run row only where `owner_token` is
still ours, in the transaction that inserts the lines. A worker that lost its run therefore
writes nothing more, and its `lost` event tells the supervisor to let go.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime

import redis
from sqlalchemy import update

from webapp import faults
from webapp.extensions import db
from webapp.livelog import publish_lines
from webapp.models import Run, RunLogChunk
from webapp.models.base import isoformat, utcnow
from webapp.services.errors import LeaseLost

log = logging.getLogger(__name__)

CHUNKS = RunLogChunk.__table__
RUNS = Run.__table__
MAX_LINE = 64 * 1024  # a longer line without a newline is stored in pieces of this size
LIVE_TEXT_MAX = 16 * 1024  # bounds Redis memory in a flood; the stored line is whole
BATCH_LINES = 1000
MAX_PENDING_LINES = 20000  # past this the reader waits for a flush: the container's writes block


class SinkError(RuntimeError):
    """Output could not be stored: the run fails rather than end as a silently truncated success."""


class LineSplitter:
    """Chunks are not lines: keep the unfinished last line until its newline arrives."""

    def __init__(self):
        self.buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        while len(self.buf) > MAX_LINE:
            lines.append(self.buf[:MAX_LINE])
            self.buf = self.buf[MAX_LINE:]
        return lines

    def rest(self) -> list[bytes]:
        out, self.buf = ([self.buf] if self.buf else []), b""
        return out


class Fence:
    """Who may write: the owner's token, the lease it also guards in Redis, and the flag set
    when either says the run belongs to another worker now."""

    def __init__(self, token: str, lease_ttl_sec: int, redis, lost: threading.Event):
        self.token, self.lease_ttl_ms, self.redis, self.lost = token, lease_ttl_sec * 1000, redis, lost


class LogSink:
    def __init__(self, run: Run, fence: Fence, *, cap_bytes: int, tail_bytes: int, batch_seconds: float,
                 live_maxlen: int, cap_lines: int, stored_lines: int = 0):
        self.run_id, self.public_id = run.id, run.public_id
        self.fence = fence
        self.batch_seconds, self.live_maxlen = batch_seconds, live_maxlen
        self.head_budget = max(0, cap_bytes - tail_bytes)
        self.tail_budget = tail_bytes
        # Lines are capped too (a flood of empty lines is small in bytes, not in rows): the head
        # keeps nine tenths of the line cap, the tail the last tenth.
        self.tail_line_budget = max(1, cap_lines // 10)
        self.head_line_budget = cap_lines - self.tail_line_budget
        self.head_lines = stored_lines
        # Where a re-attached run continues: after every seq stored or accounted for, with the
        # bytes that went only to the lost in-memory tail counted as dropped.
        self.stored = run.log_bytes or 0
        self.seq = run.log_next_seq or 0
        self.dropped = run.log_dropped_bytes or 0
        self.notice_seq: int | None = run.log_notice_seq
        self.stream_bytes = {"stdout": run.stdout_bytes or 0, "stderr": run.stderr_bytes or 0}
        self.lock = threading.Lock()
        self.drained = threading.Condition(self.lock)
        self.pending: list[dict] = []
        self.live: list[tuple] = []
        self.tail: deque = deque()
        self.tail_size = 0
        self.deferred: tuple[str, int] | None = None
        self.dirty = False
        self.last_flush = time.monotonic()
        self.splitters = {"stdout": LineSplitter(), "stderr": LineSplitter()}

    def start_after(self, stored_max_seq: int | None) -> None:
        if stored_max_seq is not None:
            self.seq = max(self.seq, stored_max_seq + 1)

    # -- input -------------------------------------------------------------------------------
    def feed(self, stream: str, chunk: bytes) -> None:
        """Called on the reader thread. Waits while too many lines are waiting for the database."""
        with self.lock:
            while len(self.pending) >= MAX_PENDING_LINES and not self.fence.lost.is_set():
                self.drained.wait(1.0)
        ts = utcnow()
        with self.lock:
            self.dirty = True
            self.stream_bytes[stream] += len(chunk)
            for raw in self.splitters[stream].feed(chunk):
                self._add(stream, raw, ts)
        self.publish()

    def system(self, text: str) -> None:
        with self.lock:
            self._add("system", text.encode(), utcnow())
        self.publish()

    def system_after(self, text: str, published_seq: int | None) -> None:
        """A system line placed after every seq live viewers may already have (`published_seq`):
        a re-attached worker re-reads, with the same numbers, the lines its predecessor had
        published but not stored, so the notice must not take one of their numbers."""
        if published_seq is None or published_seq < self.seq:
            return self.system(text)
        with self.lock:
            self.deferred = (text, published_seq)

    def end_streams(self) -> None:
        with self.lock:
            ts = utcnow()
            for stream, splitter in self.splitters.items():
                for raw in splitter.rest():
                    self._add(stream, raw, ts)
            if self.deferred is not None:
                self._add_deferred(ts)
        self.publish()

    def _add_deferred(self, ts: datetime) -> None:
        text, _ = self.deferred
        self.deferred = None
        self._add("system", text.encode(), ts)

    def _add(self, stream: str, raw: bytes, ts: datetime) -> None:
        if self.deferred is not None and self.seq > self.deferred[1]:
            self._add_deferred(ts)
        text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")  # NUL cannot be stored
        size = len(raw) + 1
        seq = self.seq
        self.seq += 1
        row = {"run_id": self.run_id, "seq": seq, "stream": stream, "text": text, "ts": ts}
        if (self.notice_seq is None and self.stored + size <= self.head_budget
                and self.head_lines < self.head_line_budget):
            self.live.append((seq, stream, text[:LIVE_TEXT_MAX], isoformat(ts)))
            self.pending.append(row)
            self.stored += size
            self.head_lines += 1
            return
        if self.notice_seq is None:  # the head is full: reserve the place of the notice
            self.notice_seq = seq
            seq = self.seq
            self.seq += 1
            row["seq"] = seq
        self.live.append((seq, stream, text[:LIVE_TEXT_MAX], isoformat(ts)))
        self.tail.append((row, size))
        self.tail_size += size
        while (self.tail_size > self.tail_budget or len(self.tail) > self.tail_line_budget) and self.tail:
            _, old = self.tail.popleft()
            self.tail_size -= old
            self.dropped += old

    # -- output ------------------------------------------------------------------------------
    def publish(self) -> None:
        with self.lock:
            live, self.live = self.live, []
        if not live or self.fence.lost.is_set():
            return
        try:
            publish_lines(self.public_id, live, token=self.fence.token, lease_ttl_ms=self.fence.lease_ttl_ms,
                          maxlen=self.live_maxlen, redis=self.fence.redis)
        except LeaseLost:
            self.fence.lost.set()
        except redis.RedisError as e:  # live viewers fill holes from the database, the record
            log.warning("could not publish live lines of %s: %s", self.public_id, e)
        except Exception:
            log.exception("could not publish live lines of %s", self.public_id)

    def due(self) -> bool:
        """Lines to store, or (past the cap, where lines go to the in-memory tail) new bytes read:
        the stored read offsets must follow, or a re-attached reader would read them again."""
        return len(self.pending) >= BATCH_LINES or (
            (self.pending or self.dirty) and time.monotonic() - self.last_flush >= self.batch_seconds)

    def flush(self) -> None:
        """Store the pending lines, fenced by the owner's token. LeaseLost if the run is no
        longer ours; SinkError if the database refused."""
        with self.lock:
            rows, self.pending = self.pending, []
            self.dirty = False
            self.drained.notify_all()
            # Bytes read and turned into lines: a re-attached reader resumes after them.
            counts = {k: v - len(self.splitters[k].buf) for k, v in self.stream_bytes.items()}
            values = dict(stdout_bytes=counts["stdout"], stderr_bytes=counts["stderr"], log_bytes=self.stored,
                          log_next_seq=self.seq, log_notice_seq=self.notice_seq,
                          log_dropped_bytes=self.dropped + self.tail_size)
        self.last_flush = time.monotonic()
        self._store(rows, values)

    def close(self) -> None:
        """Store what is left: the pending head, then the notice and the tail if the cap was hit."""
        self.end_streams()
        self.flush()
        if self.notice_seq is None:
            return
        notice = {"run_id": self.run_id, "seq": self.notice_seq, "stream": "system",
                  "text": f"[{self.dropped} bytes of output dropped here: the log keeps its first "
                          f"{self.head_budget} bytes ({self.head_line_budget} lines) and its last "
                          f"{self.tail_budget} bytes ({self.tail_line_budget} lines)]",
                  "ts": utcnow()}
        rows = [notice] + [row for row, _ in self.tail]
        self.tail.clear()
        self._store(rows, dict(log_dropped_bytes=self.dropped, log_bytes=self.stored + self.tail_size))

    def _store(self, rows: list[dict], values: dict) -> None:
        try:
            if rows:
                faults.raise_here("sink-flush")
            owned = db.session.execute(update(RUNS).where(RUNS.c.id == self.run_id, RUNS.c.status == "running",
                                                          RUNS.c.owner_token == self.fence.token)
                                       .values(**values)).rowcount
            if not owned:
                db.session.rollback()
                self.fence.lost.set()
                raise LeaseLost(self.public_id)
            if rows:
                db.session.execute(CHUNKS.insert(), rows)  # Core executemany: far faster than the ORM path
            db.session.commit()
        except LeaseLost:
            raise
        except Exception as e:
            db.session.rollback()
            log.exception("could not store the output of %s", self.public_id)
            raise SinkError(str(e)) from e
