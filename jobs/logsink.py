"""Where a run's output goes: split into lines, published live at once, stored in batches, capped.

Past the cap the sink keeps the head (cap minus the tail size) and a rolling last 1 MiB, and at
close stores a notice of the bytes dropped between them. Memory stays bounded whatever the flood.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime

from sqlalchemy import update

from webapp.extensions import db
from webapp.models import Run, RunLogChunk
from webapp.models.base import isoformat, utcnow

from webapp.connections import get_redis

from .livelog import publish_lines

log = logging.getLogger(__name__)

CHUNKS = RunLogChunk.__table__
MAX_LINE = 64 * 1024  # a longer line without a newline is stored in pieces of this size
LIVE_TEXT_MAX = 16 * 1024  # bounds Redis memory in a flood; the stored line is whole
BATCH_LINES = 1000
MAX_PENDING_LINES = 20000  # past this the reader waits for a flush: the container's writes block
BATCH_SECONDS = 0.25


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


class LogSink:
    def __init__(self, run: Run, cap_bytes: int, tail_bytes: int, *, next_seq: int = 0,
                 stored_bytes: int = 0, stream_bytes: dict | None = None):
        self.run_id, self.public_id = run.id, run.public_id
        self.redis = get_redis()  # made here: feed() runs on the reader thread, outside the app context
        self.head_budget = max(0, cap_bytes - tail_bytes)
        self.tail_budget = tail_bytes
        self.stored = stored_bytes
        self.seq = next_seq
        self.lock = threading.Lock()
        self.drained = threading.Condition(self.lock)
        self.pending: list[dict] = []
        self.live: list[tuple] = []
        self.tail: deque = deque()
        self.tail_size = 0
        self.dropped = 0
        self.notice_seq: int | None = None
        self.last_flush = time.monotonic()
        self.splitters = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        self.stream_bytes = dict(stream_bytes or {"stdout": 0, "stderr": 0})

    # -- input -------------------------------------------------------------------------------
    def feed(self, stream: str, chunk: bytes) -> None:
        """Called on the reader thread. Waits while too many lines are waiting for the database."""
        with self.lock:
            while len(self.pending) >= MAX_PENDING_LINES:
                self.drained.wait(1.0)
        ts = utcnow()
        with self.lock:
            self.stream_bytes[stream] += len(chunk)
            for raw in self.splitters[stream].feed(chunk):
                self._add(stream, raw, ts)
        self.publish()

    def system(self, text: str) -> None:
        with self.lock:
            self._add("system", text.encode(), utcnow())
        self.publish()

    def end_streams(self) -> None:
        with self.lock:
            ts = utcnow()
            for stream, splitter in self.splitters.items():
                for raw in splitter.rest():
                    self._add(stream, raw, ts)
        self.publish()

    def _add(self, stream: str, raw: bytes, ts: datetime) -> None:
        text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")  # NUL cannot be stored
        size = len(raw) + 1
        seq = self.seq
        self.seq += 1
        self.live.append((seq, stream, text[:LIVE_TEXT_MAX], isoformat(ts)))
        row = {"run_id": self.run_id, "seq": seq, "stream": stream, "text": text, "ts": ts}
        if self.notice_seq is None and self.stored + size <= self.head_budget:
            self.pending.append(row)
            self.stored += size
            return
        if self.notice_seq is None:  # the head is full: reserve the place of the notice
            self.notice_seq = seq
            self.seq += 1
            row["seq"] = seq + 1
            self.live[-1] = (seq + 1, stream, text[:LIVE_TEXT_MAX], isoformat(ts))
        self.tail.append((row, size))
        self.tail_size += size
        while self.tail_size > self.tail_budget and self.tail:
            _, old = self.tail.popleft()
            self.tail_size -= old
            self.dropped += old

    # -- output ------------------------------------------------------------------------------
    def publish(self) -> None:
        with self.lock:
            live, self.live = self.live, []
        if live:
            try:
                publish_lines(self.public_id, live, redis=self.redis)
            except Exception:  # live viewers are a courtesy; the database is the record
                log.warning("could not publish live lines of %s", self.public_id, exc_info=True)

    def due(self) -> bool:
        return len(self.pending) >= BATCH_LINES or (
            self.pending and time.monotonic() - self.last_flush >= BATCH_SECONDS)

    def flush(self) -> None:
        with self.lock:
            rows, self.pending = self.pending, []
            self.drained.notify_all()
            # Bytes read and turned into lines: a re-attached reader resumes after them.
            counts = {k: v - len(self.splitters[k].buf) for k, v in self.stream_bytes.items()}
            stored = self.stored
        self.last_flush = time.monotonic()
        if rows:
            db.session.execute(CHUNKS.insert(), rows)  # Core executemany: far faster than the ORM path
        db.session.execute(update(Run).where(Run.id == self.run_id).values(
            stdout_bytes=counts["stdout"], stderr_bytes=counts["stderr"], log_bytes=stored))
        db.session.commit()

    def close(self) -> None:
        """Store what is left: the pending head, then the notice and the tail if the cap was hit."""
        self.end_streams()
        self.flush()
        if self.notice_seq is None:
            return
        notice = {"run_id": self.run_id, "seq": self.notice_seq, "stream": "system",
                  "text": f"[{self.dropped} bytes of output dropped here: the log keeps its first "
                          f"{self.head_budget} bytes and its last {self.tail_budget} bytes]",
                  "ts": utcnow()}
        rows = [notice] + [row for row, _ in self.tail]
        db.session.execute(CHUNKS.insert(), rows)
        db.session.execute(update(Run).where(Run.id == self.run_id).values(
            log_dropped_bytes=self.dropped, log_bytes=self.stored + self.tail_size))
        db.session.commit()
