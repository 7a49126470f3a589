"""A run's stored output read back: pages for the API, the whole text for a download, the tail the
run page comes with, the backlog the websocket sends; and a system line added to a finished run's
log after the fact. Every reader goes a page of blocks at a time, so memory stays bounded whatever
the length of the log."""
from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select, update

from ..admission import give_way
from ..extensions import db
from ..models import Run, RunLogBlock
from ..models.base import utcnow
from ..vocabulary import TERMINAL
from . import codec

LOG_PAGE_MAX = 10000  # lines per page of the logs API
BLOCK_PAGE = 64  # blocks per query of everything that reads logs: at most 4 MiB of text


class LogLine(NamedTuple):
    """One stored line: blocks hold lines, readers see lines with their own seq."""
    seq: int
    stream: str
    text: str
    ts: datetime


def _block_query(run_pk: int):
    table = RunLogBlock.__table__
    return select(table.c.first_seq, table.c.last_seq, table.c.stream, table.c.text, table.c.packed,
                  table.c.ts).where(table.c.run_id == run_pk)


def _blocks(run_pk: int, after_seq: int, before_seq: int | None, *, release: bool):
    """The stored blocks holding a line with after_seq < seq (< before_seq), in order, a page of
    blocks per query (keyset on last_seq). `release`: end the read transaction after each page, for
    a reader that streams for long (a snapshot held open would keep SQLite's WAL growing)."""
    table = RunLogBlock.__table__
    while True:
        query = _block_query(run_pk).where(table.c.last_seq > after_seq)
        if before_seq is not None:
            query = query.where(table.c.first_seq < before_seq)
        rows = db.session.execute(query.order_by(table.c.last_seq).limit(BLOCK_PAGE)).all()
        if release:
            db.session.commit()
        yield from rows
        if len(rows) < BLOCK_PAGE:
            return
        give_way()
        after_seq = rows[-1].last_seq


def _lines(block, after_seq: int = -1, before_seq: int | None = None) -> list[LogLine]:
    first, stream = block.first_seq, block.stream
    text, offsets = codec.decode(block.text, block.packed)
    texts = text.split("\n")
    lines = [LogLine(first + i, stream, line, ts)
             for i, (line, ts) in enumerate(zip(texts, codec.instants(block.ts, offsets, len(texts))))]
    if first <= after_seq or (before_seq is not None and block.last_seq >= before_seq):
        lines = [line for line in lines if line.seq > after_seq and (before_seq is None or line.seq < before_seq)]
    return lines


def log_lines(run: Run, after_seq: int = -1, before_seq: int | None = None,
              limit: int = LOG_PAGE_MAX) -> list[LogLine]:
    """At most `limit` stored lines after `after_seq` (and before `before_seq`), in order."""
    out: list[LogLine] = []
    for block in _blocks(run.id, after_seq, before_seq, release=False):
        out += _lines(block, after_seq, before_seq)
        if len(out) >= limit:
            break
    return out[:limit]


def log_pages(run_pk: int, after_seq: int = -1, before_seq: int | None = None):
    """Every stored line after `after_seq` (and before `before_seq`), a block at a time: memory
    stays bounded by a page of blocks whatever the length of the log."""
    for block in _blocks(run_pk, after_seq, before_seq, release=True):
        yield _lines(block, after_seq, before_seq)


def log_text(run_pk: int, after_seq: int = -1):
    """The log as text, streamed a block at a time (a block's text is its lines already joined)."""
    for block in _blocks(run_pk, after_seq, None, release=True):
        if block.first_seq > after_seq:
            yield codec.decode(block.text, block.packed)[0] + "\n"
        else:
            yield "".join(line.text + "\n" for line in _lines(block, after_seq))


def note_in_log(public_id: str, text: str) -> bool | None:
    """A system line added at the end of a finished run's stored output, after the fact (that its
    host stopped its container, say). True once added; False while the run is not finished (its log
    belongs to its owner, who says it); None if there is no such run. The seq is taken with a
    compare-and-set on the run's next seq, so two writers never share one."""
    table = Run.__table__
    row = db.session.execute(select(table.c.id, table.c.status, table.c.log_next_seq)
                             .where(table.c.public_id == public_id)).one_or_none()
    if row is None or row.status not in TERMINAL:
        db.session.commit()
        return None if row is None else False
    taken = db.session.execute(update(table).where(table.c.id == row.id, table.c.log_next_seq == row.log_next_seq)
                               .values(log_next_seq=row.log_next_seq + 1)).rowcount
    if taken:
        db.session.execute(RunLogBlock.__table__.insert().values(
            run_id=row.id, first_seq=row.log_next_seq, last_seq=row.log_next_seq, stream="system", text=text,
            ts=utcnow()))
    db.session.commit()
    return bool(taken) or note_in_log(public_id, text)


def last_log_lines(run: Run, count: int) -> list[LogLine]:
    """The last `count` stored lines, in order (what a page shows before its websocket connects)."""
    table = RunLogBlock.__table__
    blocks, lines, before = [], 0, None
    while lines < count:  # newest blocks first, a page at a time, until they hold `count` lines
        query = _block_query(run.id)
        if before is not None:
            query = query.where(table.c.last_seq < before)
        page = db.session.execute(query.order_by(table.c.last_seq.desc()).limit(BLOCK_PAGE)).all()
        for block in page:
            blocks.append(block)
            lines += block.last_seq - block.first_seq + 1
            if lines >= count:
                break
        if len(page) < BLOCK_PAGE:
            break
        before = page[-1].last_seq
    out = [line for block in reversed(blocks) for line in _lines(block)]
    return out[-count:] if count else []
