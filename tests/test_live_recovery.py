"""Live logs across trims and take-overs: a viewer never skips a line silently, and a re-attached
run does not renumber the lines viewers already have. Real server, workers and engine."""
from __future__ import annotations

import threading

from conftest import all_logs, wait_for, wait_status
from runs_api import fire
from live_client import collect, stream_url
from webapp import keys

FAST = {"RUN_LEASE_TTL_SEC": "3"}


def stored(client, m, run_id):
    return client.get(f"/api/workflows/{m.team_id}/workflows/runs/{run_id}/logs", headers=m.h()).get_json()["lines"]


def stream_seqs(app, run_id) -> list[int]:
    from webapp.connections import get_redis
    from webapp import keys
    from webapp.runoutput.stream import decode
    with app.app_context():
        entries = get_redis().xrange(keys.run_stream(run_id))
    return [item["seq"] for _, fields in entries for item in decode(fields) if "seq" in item]


def test_a_viewer_joining_after_the_stream_was_trimmed_misses_nothing(app, client, alice, procs, ws_server):
    # A short live stream and a database that stores nothing before the exit: the hole is certain.
    procs.worker(1, env={"LIVE_STREAM_MAXLEN": "5", "LOG_BATCH_SECONDS": "30"})
    procs.scheduler()
    script = "i=0; while [ $i -lt 400 ]; do echo l-$i; i=$((i+1)); usleep 1000; done; sleep 2; echo done"
    run = fire(client, alice, command=["sh", "-c", script], timeoutSec=60)
    wait_for(lambda: 399 in stream_seqs(app, run["id"]), 30, every=0.02)
    seqs = stream_seqs(app, run["id"])
    assert seqs[0] > 50 and not stored(client, alice, run["id"])  # trimmed, and not yet stored
    frames = [f for _, f in collect(stream_url(ws_server, alice, run["id"]), alice.h())]
    assert frames[-1] == {"event": "end", "status": "succeeded"}
    lines = [f for f in frames if "seq" in f]
    assert [f["seq"] for f in lines] == list(range(401))
    assert [f["text"] for f in lines] == [f"l-{i}" for i in range(400)] + ["done"]


def test_a_reattached_run_keeps_the_numbers_viewers_have(app, client, alice, procs, ws_server):
    # Nothing is stored before the kill (a 30 s batch): the new owner re-reads every line and must
    # give each the number the viewer already saw, and put its notice after them.
    worker = procs.worker(1, env={**FAST, "LOG_BATCH_SECONDS": "30"})
    procs.scheduler(env=FAST)
    run = fire(client, alice, command=["sh", "-c", "for i in $(seq 1 12); do echo line-$i; sleep 0.4; done"],
               timeoutSec=120)
    got: list = []
    viewer = threading.Thread(target=collect, args=(stream_url(ws_server, alice, run["id"]), alice.h(), 90, got))
    viewer.start()
    wait_for(lambda: len([f for _, f in got if f.get("stream") == "stdout"]) >= 5, 30, every=0.05)
    procs.kill(worker)
    assert not stored(client, alice, run["id"])
    procs.worker(1, env=FAST)
    viewer.join(90)
    frames = [f for _, f in got]
    assert frames[-1] == {"event": "end", "status": "succeeded"}
    lines = [f for f in frames if "seq" in f]
    assert [f["seq"] for f in lines] == list(range(len(lines)))  # each once, in order, no renumbering
    assert [f["text"] for f in lines if f["stream"] == "stdout"] == [f"line-{i}" for i in range(1, 13)]
    notices = [f for f in lines if f["stream"] == "system"]
    assert len(notices) == 1 and "re-attached" in notices[0]["text"]
    kept = stored(client, alice, run["id"])
    assert [(l["seq"], l["stream"], l["text"]) for l in kept] == [(f["seq"], f["stream"], f["text"]) for f in lines]


def test_bytes_past_the_cap_lost_with_a_worker_are_counted_as_dropped(app, client, alice, procs):
    from webapp.extensions import db
    from webapp.models import Run
    cap = {"LOG_CAP_BYTES": str(2 * 1024 * 1024)}
    worker = procs.worker(1, env={**FAST, **cap})
    procs.scheduler(env=FAST)
    pad = "abcdefghijklmnopqrstuvwxyz" * 3
    script = (f"awk 'BEGIN{{for(i=0;i<30000;i++) printf \"first-%06d-{pad}\\n\", i}}'; sleep 6; "
              f"awk 'BEGIN{{for(i=0;i<10000;i++) printf \"second-%06d-{pad}\\n\", i}}'")
    first_bytes = 30000 * len(f"first-000000-{pad}\n")
    total = first_bytes + 10000 * len(f"second-000000-{pad}\n")
    run = fire(client, alice, command=["sh", "-c", script], timeoutSec=120)

    def read_all_of_the_first_part():
        with app.app_context():
            r = db.session.query(Run).filter_by(public_id=run["id"]).one()
            db.session.commit()
            return r.stdout_bytes == first_bytes
    wait_for(read_all_of_the_first_part, 60)
    procs.kill(worker)  # the in-memory tail (about 1 MiB of "first" lines) dies with it
    procs.worker(1, env={**FAST, **cap})
    done = wait_status(client, alice, run["id"], timeout=90)
    assert done["status"] == "succeeded"
    body = all_logs(client, alice, run["id"])
    out = [l["text"] for l in body["lines"] if l["stream"] == "stdout"]
    assert sum(len(t) + 1 for t in out) + body["droppedBytes"] == total
    assert out[0] == f"first-000000-{pad}" and out[-1] == f"second-009999-{pad}"
    assert [l for l in body["lines"] if l["stream"] == "system" and "dropped" in l["text"]]


def test_a_reattached_reader_far_behind_its_container_still_stores_what_it_wrote_before_exiting(
        app, client, alice, procs):
    """Docker 20.10 ends a log follow when the container exits, without what was written after the
    log as it stood when the follow began if the reader had not got that far: the new owner opens
    the log, reads it only after the exit (a fault point: a reader far behind on a loaded machine),
    and must still store every line, in order."""
    from webapp.connections import get_docker, get_redis
    from webapp.extensions import db
    from webapp.models import Run
    worker = procs.worker(1, env=FAST)
    procs.scheduler(env=FAST)
    pad = "abcdefghijklmnopqrstuvwxyz" * 3
    script = (f"awk 'BEGIN{{for(i=0;i<30000;i++) printf \"first-%06d-{pad}\\n\", i}}'; "
              "while [ ! -e /go ]; do usleep 100000; done; "
              f"awk 'BEGIN{{for(i=0;i<10000;i++) printf \"second-%06d-{pad}\\n\", i}}'")
    run = fire(client, alice, command=["sh", "-c", script], timeoutSec=120)

    def row():
        with app.app_context():
            r = db.session.query(Run).filter_by(public_id=run["id"]).one()
            db.session.commit()
            return r.stdout_bytes, r.owner_token, r.container_id
    wait_for(lambda: row()[0] == 30000 * len(f"first-000000-{pad}\n"), 60)
    _, first_owner, container_id = row()
    procs.kill(worker)
    procs.worker(1, env={**FAST, "WORKFLOWS_FAULTS": "reader-lags"})
    with app.app_context():
        wait_for(lambda: get_redis().exists(keys.fault("reader-lags")), 60)  # the new owner has the log open
    assert row()[1] not in (None, first_owner)
    with app.app_context():
        api = get_docker().api
        api.exec_start(api.exec_create(container_id, ["touch", "/go"]))  # now the second part, then the exit
    done = wait_status(client, alice, run["id"], timeout=90)
    assert done["status"] == "succeeded"
    body = all_logs(client, alice, run["id"])
    assert body["droppedBytes"] == 0
    assert [l["text"] for l in body["lines"] if l["stream"] == "stdout"] == (
        [f"first-{i:06d}-{pad}" for i in range(30000)] + [f"second-{i:06d}-{pad}" for i in range(10000)])
