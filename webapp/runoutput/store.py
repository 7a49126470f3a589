"""Where a run's output goes: split into lines, published live at once, stored in blocks, capped.

Lines are numbered (`seq`) one by one but stored and published as blocks: consecutive lines of one
stream joined by newlines, merged up to BLOCK_CHARS, each line's read instant kept (codec.py, which
also compresses a block that zstd makes smaller). A chunk of a flood whose lines all fit the
head is taken whole (one decode, one block) instead of line by line.

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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from sqlalchemy import cast, column, exists, func, select, update
from sqlalchemy import values as sa_values

from .. import faults, keys
from ..extensions import db
from ..models import Run, RunLogBlock
from ..models.base import isoformat, utcnow
from ..vocabulary import RunStatus
from . import codec
from .stream import LeaseLost, publish_lines

log = logging.getLogger(__name__)

BLOCKS = RunLogBlock.__table__
MICROSECOND = timedelta(microseconds=1)
RUNS = Run.__table__
MAX_LINE = 64 * 1024  # a longer line without a newline is stored in pieces of this size
BLOCK_CHARS = 64 * 1024  # lines are merged into a stored block up to this size
LIVE_TEXT_MAX = 16 * 1024  # bounds Redis memory in a flood; the stored line is whole
BATCH_BYTES = 1024 * 1024  # a flush is due when this much waits (or LOG_BATCH_SECONDS passed)
BATCH_PIECES = 1000
ROWS_PER_INSERT = 1000  # blocks per INSERT statement: 6,000 parameters, under every database's bound
# Past either bound the reader waits for a flush: the container's writes block, memory stays flat.
MAX_PENDING_BYTES = 8 * 1024 * 1024
MAX_PENDING_PIECES = 20000


class SinkError(RuntimeError):
    """Output could not be stored for STORAGE_OUTAGE_SEC: the run fails rather than end as a
    silently truncated success."""


class StorageAway(RuntimeError):
    """One write of output failed (the database restarting, failing over, unreachable): kept in
    memory and tried again with backoff."""


OUTAGE_BACKOFF_FIRST_SEC = 0.25
OUTAGE_BACKOFF_MAX_SEC = 5.0
# How much later than the last read an entry of the engine's log must be to count as new (Skip):
# more than the error of measuring the engine's clock, less than a flood needs to rotate the log.
ROTATION_SLACK_SEC = 1.0


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


class Skip:
    """What a re-attached reader leaves out: per stream, the bytes already read, counted from the
    first byte of the engine's log. That count is right while the log still starts at the
    container's first byte; the json-file driver rotates it past CONTAINER_LOG_MAX_MB (two files
    kept), and then the count would eat new output. Every byte counted was logged by the engine
    before `read_at` (the engine's clock), so an entry logged later than that (give or take
    ROTATION_SLACK_SEC of clock measurement) is new whatever the count says: skipping stops there,
    and the log says that what the engine no longer kept is missing."""

    def __init__(self, counts: dict | None, read_at, sink: "LogSink"):
        self.remaining = dict(counts or {"stdout": 0, "stderr": 0})
        self.after = read_at + timedelta(seconds=ROTATION_SLACK_SEC) if read_at is not None else None
        self.sink = sink
        self.said = False

    def rest(self, stream: str, chunk: bytes, logged_at) -> bytes:
        """The part of `chunk` (of `stream`, logged by the engine at `logged_at`) not yet read."""
        if not self.remaining[stream]:
            return chunk
        if logged_at is not None and self.after is not None and logged_at > self.after:
            self.remaining[stream] = 0
            if not self.said:
                self.said = True
                self.sink.system("the engine rotated its log of this container (over CONTAINER_LOG_MAX_MB) "
                                 "while no worker was reading it: output it no longer kept is missing here")
            return chunk
        cut = min(self.remaining[stream], len(chunk))
        self.remaining[stream] -= cut
        return chunk[cut:]


class Fence:
    """Who may write: the owner's token, the lease it also guards in Redis, and the flag set
    when either says the run belongs to another worker now."""

    def __init__(self, token: str, lease_ttl_sec: int, redis, lost: threading.Event):
        self.token, self.lease_ttl_ms, self.redis, self.lost = token, lease_ttl_sec * 1000, redis, lost


class DailyOutput:
    """A team's stored output today (UTC), counted in Redis over every run and worker, against its
    outputBytesPerDay limit. Output taken but not yet stored counts too (`accept`), so a burst
    is cut at the limit, not a flush later. Redis away: nothing is counted and nothing refused."""

    def __init__(self, team_id: int, limit: int, client):
        self.team_id, self.limit, self.redis = team_id, limit, client
        self.known = self._spent()  # the team's total as Redis last said
        self.pending = 0  # taken by this run since, not yet stored

    def accept(self, size: int) -> int:
        """Take up to `size` bytes more; returns how many fit under the limit."""
        room = max(0, self.limit - self.known - self.pending)
        taken = min(size, room)
        self.pending += taken
        return taken

    def _key(self) -> str:
        return keys.daily_output(self.team_id, utcnow())

    def _spent(self) -> int:
        try:
            return int(self.redis.get(self._key()) or 0)
        except (redis.RedisError, ValueError):
            return 0

    def spend(self, size: int) -> None:
        if size <= 0:
            return
        try:
            key = self._key()
            with self.redis.pipeline() as pipe:
                total, _ = pipe.incrby(key, size).expire(key, 2 * 86400).execute()
            self.known, self.pending = total, max(0, self.pending - size)
        except redis.RedisError:
            pass


class LogSink:
    def __init__(self, run: Run, fence: Fence, *, cap_bytes: int, tail_bytes: int, batch_seconds: float,
                 live_maxlen: int, cap_lines: int, stored_lines: int = 0, outage_sec: float = 120,
                 daily: DailyOutput | None = None):
        self.run_id, self.public_id = run.id, run.public_id
        self.daily = daily
        self.quota_said = False
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
        # When the last byte counted there was read, on the engine's clock (`engine_clock`, set by
        # the runner once it has reached the engine).
        self.read_at: datetime | None = run.output_read_at
        self.engine_clock = None
        self.lock = threading.Lock()
        self.drained = threading.Condition(self.lock)
        self.pending: list[Block] = []
        self.pending_bytes = self.pending_pieces = 0
        self.live: list[tuple] = []  # (first_seq, stream, text of one or more lines, ts)
        self.tail: deque = deque()
        self.tail_size = 0
        self.deferred: tuple[str, int] | None = None
        self.dirty = False
        self.last_flush = time.monotonic()
        self.splitters = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        # While the database cannot be written: since when (monotonic), the next try, the backoff,
        # and the bytes dropped because the in-memory bound was reached meanwhile.
        self.outage_sec = outage_sec
        self.outage_since: float | None = None
        self.retry_at = 0.0
        self.backoff = OUTAGE_BACKOFF_FIRST_SEC
        self.outage_dropped = 0

    def start_after(self, stored_max_seq: int | None) -> None:
        if stored_max_seq is not None:
            self.seq = max(self.seq, stored_max_seq + 1)

    # -- input -------------------------------------------------------------------------------
    def feed(self, stream: str, chunk: bytes) -> None:
        """Called on the reader thread. Waits while too much is waiting for the database."""
        with self.lock:
            while ((self.pending_bytes >= MAX_PENDING_BYTES or self.pending_pieces >= MAX_PENDING_PIECES)
                   and not self.fence.lost.is_set()):
                if self.outage_since is not None:  # nothing drains while the database is away
                    return self._drop(stream, chunk, outage=True)
                self.drained.wait(1.0)
        ts = utcnow()
        with self.lock:
            if self.daily is not None:
                taken = self.daily.accept(len(chunk))
                if taken < len(chunk):  # the team's limit is reached inside this chunk
                    self._feed_held(stream, chunk[:taken], ts)
                    self._drop_over_quota(stream, chunk[taken:], ts)
                    chunk = b""
            if chunk:
                self._feed_held(stream, chunk, ts)
        self.publish()

    def _feed_held(self, stream: str, chunk: bytes, ts: datetime) -> None:
        """Take `chunk` into lines. Called holding the lock."""
        if not chunk:
            return
        self.dirty = True
        self._count(stream, chunk)
        lines = self.splitters[stream].feed(chunk)
        if not self._add_whole(stream, lines, ts):
            for raw in lines:
                self._add(stream, raw, ts)

    def _count(self, stream: str, chunk: bytes) -> None:
        self.stream_bytes[stream] += len(chunk)
        if self.engine_clock is not None:
            self.read_at = self.engine_clock()

    def _drop(self, stream: str, chunk: bytes, outage: bool) -> None:
        """Past the in-memory bound during an outage (or past the team's daily output): the chunk
        (and the unfinished line before it) is counted as dropped, not waited on, so the container
        is never blocked on its output. Called holding the lock."""
        splitter = self.splitters[stream]
        lost = len(chunk) + len(splitter.buf)
        splitter.buf = b""
        self._count(stream, chunk)
        if outage:
            self.outage_dropped += lost
        self.dropped += lost
        self.dirty = True

    def _drop_over_quota(self, stream: str, chunk: bytes, ts: datetime) -> None:
        """The team stored its outputBytesPerDay today: the output is counted as dropped, the run
        goes on, and its log says so once. Called holding the lock."""
        if not self.quota_said:
            self.quota_said = True
            self._add("system", (f"this team stored {self.daily.limit} bytes of output today, its limit "
                                 "(outputBytesPerDay): further output of this run is counted, not kept").encode(), ts)
        self._drop(stream, chunk, outage=False)

    def _add_whole(self, stream: str, lines: list[bytes], ts: datetime) -> bool:
        """The lines of one chunk as one block, when they all go to the head as they are (no
        notice pending, under the cap, no line cut for the live stream). False: line by line."""
        if len(lines) < 2 or self.deferred is not None or self.notice_seq is not None:
            return False
        joined = b"\n".join(lines)
        size = len(joined) + 1
        if (len(joined) > BLOCK_CHARS or self.stored + size > self.head_budget
                or self.head_lines + len(lines) > self.head_line_budget
                or (len(joined) > LIVE_TEXT_MAX and max(map(len, lines)) > LIVE_TEXT_MAX)):
            return False
        text = joined.decode("utf-8", errors="replace")  # a newline is never part of a UTF-8 sequence
        if "\x00" in text:
            text = text.replace("\x00", "\ufffd")  # NUL cannot be stored
        first = self.seq
        self.seq += len(lines)
        self.stored += size
        self.head_lines += len(lines)
        self.live.append((first, stream, text, isoformat(ts)))
        self._pend(first, self.seq - 1, stream, ts, text)
        return True

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
        if (self.notice_seq is None and self.stored + size <= self.head_budget
                and self.head_lines < self.head_line_budget):
            self.live.append((seq, stream, text[:LIVE_TEXT_MAX], isoformat(ts)))
            self._pend(seq, seq, stream, ts, text)
            self.stored += size
            self.head_lines += 1
            return
        if self.notice_seq is None:  # the head is full: reserve the place of the notice
            self.notice_seq = seq
            seq = self.seq
            self.seq += 1
        self.live.append((seq, stream, text[:LIVE_TEXT_MAX], isoformat(ts)))
        self.tail.append(((seq, stream, text, ts), size))
        self.tail_size += size
        while (self.tail_size > self.tail_budget or len(self.tail) > self.tail_line_budget) and self.tail:
            _, old = self.tail.popleft()
            self.tail_size -= old
            self.dropped += old

    def _pend(self, first: int, last: int, stream: str, ts: datetime, text: str) -> None:
        """Lines first..last for the next flush: merged into the block before when they continue it
        (same stream, the next seq, room left), else a block of their own."""
        self.pending_bytes += len(text) + 1
        self.pending_pieces += 1
        _merge(self.pending, first, last, stream, ts, text)

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

    def idle(self) -> bool:
        """Nothing read that is still to be stored."""
        return not self.pending and not self.dirty

    def due(self) -> bool:
        """Lines to store, or (past the cap, where lines go to the in-memory tail) new bytes read:
        the stored read offsets must follow, or a re-attached reader would read them again. While
        the database is away, not before the next try."""
        if self.outage_since is not None and time.monotonic() < self.retry_at:
            return False
        return self.pending_bytes >= BATCH_BYTES or self.pending_pieces >= BATCH_PIECES or (
            (self.pending or self.dirty) and time.monotonic() - self.last_flush >= self.batch_seconds)

    def flush(self) -> None:
        """Store the pending lines, fenced by the owner's token. LeaseLost if the run is no longer
        ours. If the database cannot be written, the lines stay pending for the next try (see
        `due`); SinkError once that has lasted STORAGE_OUTAGE_SEC."""
        with self.lock:
            blocks, self.pending = self.pending, []
            self.pending_bytes = self.pending_pieces = 0
            self.dirty = False
            self.drained.notify_all()
            # Bytes read and turned into lines: a re-attached reader resumes after them.
            counts = {k: v - len(self.splitters[k].buf) for k, v in self.stream_bytes.items()}
            values = dict(stdout_bytes=counts["stdout"], stderr_bytes=counts["stderr"],
                          output_read_at=self.read_at, log_bytes=self.stored,
                          log_next_seq=self.seq, log_notice_seq=self.notice_seq,
                          log_dropped_bytes=self.dropped + self.tail_size)
        self.last_flush = time.monotonic()
        try:
            self._store(blocks, values)
            if self.daily is not None:
                self.daily.spend(sum(block.chars + 1 for block in blocks))
        except StorageAway as e:
            with self.lock:
                self.pending[:0] = blocks
                self.pending_bytes += sum(block.chars + 1 for block in blocks)
                self.pending_pieces += sum(len(block.texts) for block in blocks)
                self.dirty = True
            self._away(e)
            return
        self._back()

    def _away(self, e: StorageAway) -> None:
        now = time.monotonic()
        if self.outage_since is None:
            self.outage_since, self.backoff = now, OUTAGE_BACKOFF_FIRST_SEC
            log.warning("the output of %s cannot be stored (%s); kept in memory and tried again",
                        self.public_id, str(e)[:200])
        else:
            self.backoff = min(OUTAGE_BACKOFF_MAX_SEC, self.backoff * 2)
        self.retry_at = now + self.backoff
        if now - self.outage_since >= self.outage_sec:
            raise SinkError(f"the database could not be written for {self.outage_sec} s (STORAGE_OUTAGE_SEC)")

    def _back(self) -> None:
        if self.outage_since is None:
            return
        log.warning("the output of %s is stored again after %.1f s", self.public_id,
                    time.monotonic() - self.outage_since)
        self.outage_since = None
        if self.outage_dropped:
            self.system(f"[{self.outage_dropped} bytes of output dropped while the database could not be "
                        "written and the memory set aside for it was full]")
            self.outage_dropped = 0

    def _until_stored(self, store) -> None:
        """`store()` (a flush) again and again, waiting out the backoff, until nothing is left
        unwritten; LeaseLost or SinkError end it."""
        while True:
            store()
            if self.outage_since is None:
                return
            if self.fence.lost.is_set():
                raise LeaseLost(self.public_id)
            time.sleep(max(0.0, self.retry_at - time.monotonic()))

    def close(self) -> None:
        """Store what is left: the pending head, then the notice and the tail if the cap was hit.
        Waits out an outage of the database (up to STORAGE_OUTAGE_SEC in all)."""
        self.end_streams()
        self._until_stored(self.flush)
        if self.outage_since is None and self.pending:  # the line about dropped output
            self._until_stored(self.flush)
        if self.notice_seq is None:
            return
        notice = (f"[{self.dropped} bytes of output dropped here: the log keeps its first "
                  f"{self.head_budget} bytes ({self.head_line_budget} lines) and its last "
                  f"{self.tail_budget} bytes ({self.tail_line_budget} lines)]")
        blocks: list[Block] = []
        _merge(blocks, self.notice_seq, self.notice_seq, "system", utcnow(), notice)
        for (seq, stream, text, ts), _ in self.tail:
            _merge(blocks, seq, seq, stream, ts, text)
        self.tail.clear()
        values = dict(log_dropped_bytes=self.dropped, log_bytes=self.stored + self.tail_size)

        def store_tail():
            try:
                self._store(blocks, values)
                self._back()
            except StorageAway as e:
                self._away(e)
        self._until_stored(store_tail)

    def _store(self, blocks: list[Block], values: dict) -> None:
        rows = [block.row(self.run_id) for block in blocks]
        try:
            if rows:
                faults.raise_here("sink-flush")
            fenced = update(RUNS).where(RUNS.c.id == self.run_id, RUNS.c.status == RunStatus.RUNNING,
                                        RUNS.c.owner_token == self.fence.token).values(**values)
            if db.engine.dialect.name == "postgresql" and len(rows) <= ROWS_PER_INSERT:
                owned = _store_in_one_statement(fenced, rows)
            else:
                owned = _store_in_one_transaction(fenced, rows)
            if not owned:
                self.fence.lost.set()
                raise LeaseLost(self.public_id)
        except LeaseLost:
            raise
        except Exception as e:
            db.session.rollback()
            if self.outage_since is None:
                log.exception("could not store the output of %s", self.public_id)
            raise StorageAway(f"{type(e).__name__}: {e}") from e


def _store_in_one_transaction(fenced, rows: list[dict]) -> bool:
    """The run's row (only while the run is ours: False if not) and the blocks, in one transaction."""
    if not db.session.execute(fenced).rowcount:
        db.session.rollback()
        return False
    for at in range(0, len(rows), ROWS_PER_INSERT):  # one statement, not one per block
        db.session.execute(BLOCKS.insert().values(rows[at:at + ROWS_PER_INSERT]))
    db.session.commit()
    return True


def _store_in_one_statement(fenced, rows: list[dict]) -> bool:
    """PostgreSQL: the same as one statement, outside a transaction (no BEGIN, no COMMIT): the
    update in a WITH, the insert in another that takes the blocks only if the update found the run
    ours. A running run that prints costs one statement a flush (docs/benchmarks.md, "Database
    load")."""
    owned = fenced.returning(RUNS.c.id).cte("owned")
    statement = select(func.count()).select_from(owned)
    if rows:
        names = list(rows[0])
        given = sa_values(*[column(n, BLOCKS.c[n].type) for n in names], name="given").data(
            [tuple(row[n] for n in names) for row in rows])
        taken = select(*[cast(given.c[n], BLOCKS.c[n].type) for n in names]).where(exists(select(owned.c.id)))
        statement = statement.add_cte(BLOCKS.insert().from_select(names, taken).cte("stored"))
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return bool(conn.execute(statement).scalar())


@dataclass
class Block:
    """Lines first_seq..last_seq of one stream, to be stored as one row (runoutput/codec.py)."""
    first_seq: int
    last_seq: int
    stream: str
    ts: datetime  # when its first line was read
    texts: list[str]  # pieces of one or more lines each
    chars: int  # the texts' length, joined by newlines
    reads: list[tuple[int, datetime]] = field(default_factory=list)  # (lines, read at) of each piece

    def row(self, run_id: int) -> dict:
        text = self.texts[0] if len(self.texts) == 1 else "\n".join(self.texts)
        offsets = None
        if any(at != self.ts for _, at in self.reads):
            offsets = [int((at - self.ts) / MICROSECOND) for lines, at in self.reads for _ in range(lines)]
        text, packed = codec.encode(text, offsets)
        return {"run_id": run_id, "first_seq": self.first_seq, "last_seq": self.last_seq, "stream": self.stream,
                "ts": self.ts, "text": text, "packed": packed}


def _merge(blocks: list[Block], first: int, last: int, stream: str, ts: datetime, text: str) -> None:
    """Append lines first..last, read at `ts`, to `blocks`: onto the last block when they continue
    it (same stream, the next seq) and it has room, else as a block of their own."""
    if blocks:
        block = blocks[-1]
        if block.last_seq + 1 == first and block.stream == stream and block.chars + len(text) + 1 <= BLOCK_CHARS:
            block.last_seq = last
            block.texts.append(text)
            block.chars += len(text) + 1
            block.reads.append((last - first + 1, ts))
            return
    blocks.append(Block(first, last, stream, ts, [text], len(text), [(last - first + 1, ts)]))
