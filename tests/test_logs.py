"""Captured output past the per-run cap: the head, a notice, the last 1 MiB; exact accounting."""
from __future__ import annotations

from conftest import all_logs, wait_status
from runs_api import base, launch


def logs(client, m, run_id):
    return all_logs(client, m, run_id)


def test_log_cap_keeps_head_and_tail(client, alice, procs):
    # a worker with a 2 MiB cap: 1 MiB head, 1 MiB tail
    procs.worker(1, env={"LOG_CAP_BYTES": str(2 * 1024 * 1024)})
    procs.scheduler()
    script = "i=0; while [ $i -lt 120000 ]; do echo \"line-$i-abcdefghijklmnopqrstuvwxyz\"; i=$((i+1)); done"
    _, run = launch(client, alice, command=["sh", "-c", script], timeoutSec=300)
    done = wait_status(client, alice, run["id"], timeout=240)
    assert done["status"] == "succeeded"
    body = logs(client, alice, run["id"])
    assert body["truncated"] is True and body["droppedBytes"] > 0
    texts = [l["text"] for l in body["lines"]]
    assert texts[0] == "line-0-abcdefghijklmnopqrstuvwxyz"
    assert texts[-1] == "line-119999-abcdefghijklmnopqrstuvwxyz"
    notice = [l for l in body["lines"] if l["stream"] == "system"]
    assert len(notice) == 1 and "dropped" in notice[0]["text"]
    stored = sum(len(t) + 1 for t in texts if not t.startswith("["))
    assert stored <= 2 * 1024 * 1024
    total = sum(len(f"line-{i}-abcdefghijklmnopqrstuvwxyz") + 1 for i in range(120000))
    assert stored + body["droppedBytes"] == total
    # the kept tail is contiguous up to the end
    tail_start = texts.index(notice[0]["text"]) + 1
    first_tail = int(texts[tail_start].split("-")[1])
    assert texts[tail_start:] == [f"line-{i}-abcdefghijklmnopqrstuvwxyz" for i in range(first_tail, 120000)]


def test_nul_bytes_in_output_are_stored_as_replacement_characters(client, alice, procs):
    procs.worker(1)
    procs.scheduler()
    _, run = launch(client, alice, command=["sh", "-c", "printf 'a\\000b\\n'; echo after"])
    done = wait_status(client, alice, run["id"], timeout=30)
    assert done["status"] == "succeeded"
    assert [l["text"] for l in logs(client, alice, run["id"])["lines"]] == ["a\ufffdb", "after"]


def test_a_flood_is_stored_in_blocks_and_every_reader_still_sees_lines(app, client, alice, procs):
    from sqlalchemy import func

    from webapp.extensions import db
    from webapp.models import Run, RunLogBlock
    from webapp.runoutput.read import last_log_lines
    procs.worker(1)
    procs.scheduler()
    _, run = launch(client, alice, command=["sh", "-c", "yes out-line | head -n 30000; echo err-line >&2; seq 1 20000"])
    assert wait_status(client, alice, run["id"], timeout=120)["status"] == "succeeded"
    lines = logs(client, alice, run["id"])["lines"]
    assert [l["seq"] for l in lines] == list(range(50001))  # the engine copies the two streams apart: where the stderr line lands among the rest varies
    assert [l["text"] for l in lines if l["stream"] == "stdout"] == ["out-line"] * 30000 + [
        str(i) for i in range(1, 20001)]
    assert [l["text"] for l in lines if l["stream"] == "stderr"] == ["err-line"]
    with app.app_context():
        pk = db.session.query(Run.id).filter_by(public_id=run["id"]).scalar()
        blocks = db.session.query(func.count(RunLogBlock.id)).filter_by(run_id=pk).scalar()
        assert blocks < 1000, f"{blocks} rows for 50,001 lines: the flood was not stored in blocks"
        last = last_log_lines(db.session.get(Run, pk), 3)
        assert [(l.seq, l.text) for l in last] == [(l["seq"], l["text"]) for l in lines[-3:]]
    # pages and the text form start and end inside blocks, exactly where asked
    url = f"{base(alice)}/runs/{run['id']}/logs"
    page = client.get(f"{url}?afterSeq=29995&limit=7", headers=alice.h()).get_json()
    assert [(l["seq"], l["text"]) for l in page["lines"]] == [(l["seq"], l["text"]) for l in lines[29996:30003]]
    assert page["nextAfterSeq"] == 30002
    text = client.get(f"{url}?format=text&afterSeq=29990", headers=alice.h()).get_data(as_text=True)
    assert text == "".join(l["text"] + "\n" for l in lines[29991:])


def test_lines_stored_before_blocks_survive_the_migration_both_ways(tmp_path, monkeypatch):
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    from conftest import make_member
    from webapp import create_app
    from webapp.extensions import db
    from webapp.models import Run, RunLogBlock
    from webapp.runoutput.read import log_lines
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/moved.sqlite")
    app = create_app({"TESTING": True})
    with app.app_context():
        upgrade()
    mover = make_member(app, "mover@example.test", "team-m")
    run_id = launch(app.test_client(), mover)[1]["id"]
    stored = [("stdout", "a"), ("stdout", "b"), ("stdout", "c"), ("stderr", "err"), ("stdout", "d"), ("stdout", "")]
    with app.app_context():
        run = db.session.query(Run).filter_by(public_id=run_id).one()
        ts = run.queued_at
        db.session.execute(RunLogBlock.__table__.insert(), [
            dict(run_id=run.id, first_seq=0, last_seq=2, stream="stdout", text="a\nb\nc", ts=ts),
            dict(run_id=run.id, first_seq=3, last_seq=3, stream="stderr", text="err", ts=ts),
            dict(run_id=run.id, first_seq=4, last_seq=5, stream="stdout", text="d\n", ts=ts)])
        db.session.commit()
        downgrade(revision="c4e8a2d7f913")  # back to a row per line
        rows = db.session.execute(text("SELECT seq, stream, text FROM run_log_chunks ORDER BY seq")).all()
        assert [tuple(r) for r in rows] == [(i, s, t) for i, (s, t) in enumerate(stored)]
        db.session.commit()
        upgrade()  # and forward again: each line a block of its own, read as before
        db.session.expire_all()
        run = db.session.query(Run).filter_by(public_id=run_id).one()
        assert [(l.seq, l.stream, l.text) for l in log_lines(run)] == [(i, s, t) for i, (s, t) in enumerate(stored)]
        db.session.remove()


def test_a_block_is_compressed_when_zstd_saves_and_kept_as_text_when_it_does_not(monkeypatch):
    import base64
    import os
    from datetime import datetime, timedelta

    from webapp.runoutput import codec
    from webapp.runoutput.store import Block
    at = datetime(2026, 12, 7, 8, 0, 0)
    ordinary = "\n".join(f"2026-12-07T08:00:{i % 60:02d}Z INFO GET /api/items/{i} 200 in {i % 97} ms" for i in range(500))
    row = Block(0, 499, "stdout", at, [ordinary], len(ordinary), [(500, at)]).row(1)
    assert row["text"] is None and len(row["packed"]) < 0.2 * len(ordinary)
    assert codec.decode(row["text"], row["packed"]) == (ordinary, None)
    noise = base64.b85encode(os.urandom(30000)).decode()  # random text: zstd saves about a fifth
    assert Block(0, 0, "stdout", at, [noise], len(noise), [(1, at)]).row(1)["text"] is None
    monkeypatch.setattr(codec, "PACK_SAVES", 0.5)  # a saving below the bar: kept as it is
    row = Block(0, 0, "stdout", at, [noise], len(noise), [(1, at)]).row(1)
    assert row["text"] == noise and row["packed"] is None
    short = Block(0, 0, "stderr", at, ["oops"], 4, [(1, at)]).row(1)
    assert short["text"] == "oops" and short["packed"] is None
    # lines of several reads in one block keep each its instant, to the microsecond
    later = at + timedelta(seconds=1, microseconds=7)
    row = Block(0, 2, "stdout", at, ["a\nb", "c"], 5, [(2, at), (1, later)]).row(1)
    text, offsets = codec.decode(row["text"], row["packed"])
    assert text == "a\nb\nc" and codec.instants(at, offsets, 3) == [at, at, later]


def test_a_slow_writers_lines_of_one_flush_share_a_row_and_keep_their_instants(app, client, alice, procs):
    from datetime import datetime

    from sqlalchemy import func

    from webapp.extensions import db
    from webapp.models import Run, RunLogBlock
    procs.worker(1, env={"LOG_BATCH_SECONDS": "30"})  # one flush: at the exit
    procs.scheduler()
    _, run = launch(client, alice, command=["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; usleep 200000; done"])
    assert wait_status(client, alice, run["id"], timeout=60)["status"] == "succeeded"
    lines = logs(client, alice, run["id"])["lines"]
    assert [l["text"] for l in lines] == [f"line-{i}" for i in range(1, 6)]
    instants = [datetime.fromisoformat(l["ts"].replace("Z", "+00:00")) for l in lines]
    assert all((b - a).total_seconds() >= 0.1 for a, b in zip(instants, instants[1:])), instants
    with app.app_context():
        pk = db.session.query(Run.id).filter_by(public_id=run["id"]).scalar()
        rows = db.session.query(func.count(RunLogBlock.id)).filter_by(run_id=pk, stream="stdout").scalar()
        assert rows == 1
