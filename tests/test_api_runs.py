"""Run routes: trigger, list with cursors, get, logs, cancel, retry, the rate limit."""
from __future__ import annotations

import re
from contextlib import contextmanager

from conftest import create_wf, make_member
from runs_api import base, post_trigger

from webapp import create_app


def finish(app, run_id, status="failed", exit_code=1):
    """Stand in for a worker: end a run through the same lifecycle the worker uses."""
    with app.app_context():
        from webapp.extensions import db
        from webapp.models import Run
        from webapp.services import lifecycle
        run = db.session.query(Run).filter_by(public_id=run_id).one()
        run.status = "running"
        db.session.commit()
        lifecycle.complete(run, status, exit_code=exit_code)
        db.session.remove()


def test_trigger_merges_env_and_queues(client, alice):
    wf = create_wf(client, alice, env={"A": "stored", "B": "stored"})
    r = post_trigger(client, alice, wf["id"], {"env": {"B": "override", "C": "new"}})
    assert r.status_code == 202
    run = r.get_json()
    assert run["id"].startswith("run_") and run["status"] == "queued"
    assert run["env"] == {"A": "stored", "B": "override", "C": "new"}
    assert (run["trigger"], run["attempt"], run["retryOf"], run["workflowId"]) == ("manual", 1, None, wf["id"])
    assert run["url"] == f"http://127.0.0.1:5999/runs/{run['id']}"
    for field in ("exitCode", "error", "image", "imageDigest", "scheduledFor", "queuedAt", "startedAt",
                  "finishedAt", "durationMs"):
        assert field in run


def test_trigger_without_body_and_with_bad_env(client, alice):
    wf = create_wf(client, alice)
    assert post_trigger(client, alice, wf["id"]).status_code == 202
    r = post_trigger(client, alice, wf["id"], {"env": {"1X": "v"}})
    assert r.status_code == 400 and "env" in r.get_json()["error"]["fields"]
    r = post_trigger(client, alice, wf["id"], {"env": {"K": "v" * 4097}})
    assert r.status_code == 400
    r = post_trigger(client, alice, wf["id"], {"nope": 1})
    assert r.status_code == 400 and r.get_json()["error"]["fields"]["nope"] == "unknown field"


def test_runs_are_listed_newest_first_with_a_stable_cursor(client, alice):
    wf = create_wf(client, alice)
    ids = [post_trigger(client, alice, wf["id"]).get_json()["id"] for _ in range(5)]
    page = client.get(f"{base(alice)}/{wf['id']}/runs?limit=2", headers=alice.h()).get_json()
    assert [r["id"] for r in page["runs"]] == ids[::-1][:2]
    post_trigger(client, alice, wf["id"])  # a new run arrives between pages: it must not shift them
    seen = [r["id"] for r in page["runs"]]
    while page["nextCursor"]:
        page = client.get(f"{base(alice)}/{wf['id']}/runs?limit=2&cursor={page['nextCursor']}",
                          headers=alice.h()).get_json()
        seen += [r["id"] for r in page["runs"]]
    assert seen == ids[::-1]


def test_runs_list_limits(client, alice):
    wf = create_wf(client, alice)
    for q, status in (("limit=100", 200), ("limit=1", 200), ("limit=101", 400), ("limit=0", 400),
                      ("limit=abc", 400), ("cursor=%%%", 400), ("cursor=bm90LWFuLWlk", 400)):
        r = client.get(f"{base(alice)}/{wf['id']}/runs?{q}", headers=alice.h())
        assert r.status_code == status, q


def test_get_run_and_logs(client, alice):
    wf = create_wf(client, alice)
    run = post_trigger(client, alice, wf["id"]).get_json()
    assert client.get(f"{base(alice)}/runs/{run['id']}", headers=alice.h()).get_json()["id"] == run["id"]
    logs = client.get(f"{base(alice)}/runs/{run['id']}/logs", headers=alice.h()).get_json()
    assert logs == {"runId": run["id"], "lines": [], "truncated": False, "droppedBytes": 0, "nextAfterSeq": None,
                    "prunedAt": None}
    text = client.get(f"{base(alice)}/runs/{run['id']}/logs?format=text", headers=alice.h())
    assert text.status_code == 200 and text.mimetype == "text/plain"
    assert client.get(f"{base(alice)}/runs/run_nope", headers=alice.h()).status_code == 404


def test_cancel_a_queued_run(client, alice):
    wf = create_wf(client, alice)
    run = post_trigger(client, alice, wf["id"]).get_json()
    r = client.post(f"{base(alice)}/runs/{run['id']}/cancel", headers=alice.h())
    assert r.status_code == 202 and r.get_json()["status"] == "cancelled"
    assert r.get_json()["finishedAt"]
    r = client.post(f"{base(alice)}/runs/{run['id']}/cancel", headers=alice.h())
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "conflict"


@contextmanager
def reads_of_runs(app):
    """A list that gathers every SELECT of the runs table made inside the block."""
    from sqlalchemy import event
    from webapp.extensions import db
    seen = []

    def record(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT") and re.search(r"\bFROM runs\b", statement):
            seen.append(statement)
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_cancel_loads_its_run_once_and_reads_the_answer_once(app, client, alice):
    wf = create_wf(client, alice)
    by_api, by_page = (post_trigger(client, alice, wf["id"]).get_json() for _ in range(2))
    with reads_of_runs(app) as seen:
        r = client.post(f"{base(alice)}/runs/{by_api['id']}/cancel", headers=alice.h())
        assert r.status_code == 202 and r.get_json()["status"] == "cancelled"
        assert len(seen) == 2, seen  # the run, then the answer after the commit
        client.post("/login", data={"email": alice.email, "password": alice.password})
        seen.clear()
        assert client.post(f"/runs/{by_page['id']}/cancel").status_code == 302
        assert len(seen) == 1, seen  # the run; the page it returns to loads its own
    assert client.get(f"{base(alice)}/runs/{by_page['id']}", headers=alice.h()).get_json()["status"] == "cancelled"


def test_a_run_page_of_another_team_or_of_no_run_is_a_plain_404(client, alice, charlie):
    wf = create_wf(client, charlie)
    theirs = post_trigger(client, charlie, wf["id"]).get_json()
    client.post("/login", data={"email": alice.email, "password": alice.password})
    for path in (f"/runs/{theirs['id']}", f"/runs/{theirs['id']}/row", "/runs/run_nope"):
        r = client.get(path)
        assert r.status_code == 404 and "belongs to a team you are not in" in r.get_data(as_text=True), path
    assert client.post(f"/runs/{theirs['id']}/cancel").status_code == 404
    assert client.get(f"{base(charlie)}/runs/{theirs['id']}", headers=charlie.h()).get_json()["status"] == "queued"


def test_retry_only_terminal_runs(app, client, alice):
    wf = create_wf(client, alice, env={"A": "1"})
    run = post_trigger(client, alice, wf["id"], {"env": {"B": "2"}}).get_json()
    assert client.post(f"{base(alice)}/runs/{run['id']}/retry", headers=alice.h()).status_code == 409
    finish(app, run["id"])
    r = client.post(f"{base(alice)}/runs/{run['id']}/retry", headers=alice.h())
    assert r.status_code == 202
    again = r.get_json()
    assert (again["trigger"], again["retryOf"], again["env"], again["status"]) == \
        ("retry", run["id"], {"A": "1", "B": "2"}, "queued")


def test_automatic_retries_then_one_failed_event(app, client, alice):
    from webapp.extensions import db
    from webapp.models import Event, Run
    wf = create_wf(client, alice, maxRetries=2, retryBackoffSec=0)
    run_id = post_trigger(client, alice, wf["id"]).get_json()["id"]
    chain = [run_id]
    for _ in range(2):
        finish(app, chain[-1], "failed", 3)
        with app.app_context():
            nxt = db.session.query(Run).filter(Run.retry_of.has(public_id=chain[-1])).one()
            assert (nxt.trigger, nxt.attempt, nxt.env) == ("retry", len(chain) + 1, {})
            chain.append(nxt.public_id)
            assert db.session.query(Event).count() == 0
    finish(app, chain[-1], "timed_out", None)
    with app.app_context():
        assert db.session.query(Run).count() == 3
        events = db.session.query(Event).all()
        assert [(e.kind, e.run.public_id if hasattr(e, "run") else e.run_id) for e in events][0][0] == "workflow.failed"
        assert len(events) == 1


def test_retry_backoff_is_visible_as_not_before(app, client, alice):
    wf = create_wf(client, alice, maxRetries=1, retryBackoffSec=60)
    run_id = post_trigger(client, alice, wf["id"]).get_json()["id"]
    finish(app, run_id)
    runs = client.get(f"{base(alice)}/{wf['id']}/runs", headers=alice.h()).get_json()["runs"]
    retry = runs[0]
    assert retry["status"] == "queued" and retry["attempt"] == 2
    from datetime import datetime
    delay = (datetime.fromisoformat(retry["notBefore"][:-1]) - datetime.fromisoformat(retry["queuedAt"][:-1]))
    assert 45 <= delay.total_seconds() <= 75


def test_cancelled_runs_are_never_retried(app, client, alice):
    wf = create_wf(client, alice, maxRetries=3)
    run = post_trigger(client, alice, wf["id"]).get_json()
    client.post(f"{base(alice)}/runs/{run['id']}/cancel", headers=alice.h())
    assert len(client.get(f"{base(alice)}/{wf['id']}/runs", headers=alice.h()).get_json()["runs"]) == 1


def test_a_terminal_run_never_changes(app, client, alice):
    wf = create_wf(client, alice)
    run = post_trigger(client, alice, wf["id"]).get_json()
    finish(app, run["id"], "succeeded", 0)
    with app.app_context():
        from webapp.extensions import db
        from webapp.models import Run
        from webapp.services import lifecycle
        row = db.session.query(Run).filter_by(public_id=run["id"]).one()
        assert lifecycle.complete(row, "failed", exit_code=9) is False
    assert client.get(f"{base(alice)}/runs/{run['id']}", headers=alice.h()).get_json()["status"] == "succeeded"


def test_other_teams_get_404_on_every_run_route(client, alice, charlie):
    wf = create_wf(client, alice)
    run = post_trigger(client, alice, wf["id"]).get_json()
    for team in (alice, charlie):
        for method, suffix in (("get", ""), ("get", "/logs"), ("post", "/cancel"), ("post", "/retry")):
            r = getattr(client, method)(f"{base(team)}/runs/{run['id']}{suffix}", headers=charlie.h())
            assert r.status_code == 404, (team.email, suffix)


def test_read_keys_cannot_cancel_or_retry(client, alice):
    wf = create_wf(client, alice)
    run = post_trigger(client, alice, wf["id"]).get_json()
    assert client.get(f"{base(alice)}/runs/{run['id']}", headers=alice.h("read")).status_code == 200
    assert client.post(f"{base(alice)}/runs/{run['id']}/cancel", headers=alice.h("read")).status_code == 403
    assert client.post(f"{base(alice)}/runs/{run['id']}/retry", headers=alice.h("read")).status_code == 403


def test_deleted_workflow_keeps_its_runs_readable(client, alice):
    wf = create_wf(client, alice)
    run = post_trigger(client, alice, wf["id"]).get_json()
    client.delete(f"{base(alice)}/{wf['id']}", headers=alice.h())
    assert client.get(f"{base(alice)}/runs/{run['id']}", headers=alice.h()).status_code == 200


def test_rate_limit_is_30_per_minute_per_team_across_processes(app, client, alice, charlie):
    wf = create_wf(client, alice)
    other = create_app({"TESTING": True})  # a second web process: its own app, the same Redis
    second = other.test_client()
    codes = []
    for i in range(30):
        c = client if i % 2 else second
        codes.append(post_trigger(c, alice, wf["id"]).status_code)
    assert codes == [202] * 30
    r = post_trigger(client, alice, wf["id"])
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    assert r.headers["RateLimit-Limit"] == "30" and r.headers["RateLimit-Remaining"] == "0"
    assert r.get_json()["error"]["code"] == "rate_limited"
    run = client.get(f"{base(alice)}/{wf['id']}/runs?limit=1", headers=alice.h()).get_json()["runs"][0]
    client.post(f"{base(alice)}/runs/{run['id']}/cancel", headers=alice.h())  # terminal: retryable
    assert client.post(f"{base(alice)}/runs/{run['id']}/retry", headers=alice.h()).status_code == 429
    # another team is unaffected
    wf_c = create_wf(client, charlie)
    assert post_trigger(client, charlie, wf_c["id"]).status_code == 202
    # reads are not limited
    assert client.get(f"{base(alice)}/{wf['id']}", headers=alice.h()).status_code == 200


def test_unauthenticated_calls_do_not_spend_a_teams_quota(client, alice):
    wf = create_wf(client, alice)
    for _ in range(35):
        assert client.post(f"{base(alice)}/{wf['id']}/trigger").status_code == 401
    assert post_trigger(client, alice, wf["id"]).status_code == 202


def test_members_of_two_teams(app, client, alice, charlie):
    from webapp.extensions import db
    from webapp.models import Membership
    with app.app_context():
        db.session.add(Membership(user_id=alice.user_id, team_id=charlie.team_id))
        db.session.commit()
    wf = create_wf(client, charlie)
    client.post("/login", data={"email": alice.email, "password": alice.password})
    assert client.get(f"{base(charlie)}/{wf['id']}").status_code == 200
    make_member(app, "erin@example.test", "team-e")


def test_a_stream_whose_run_is_deleted_meanwhile_closes_instead_of_failing(app, client, alice, ws_server):
    """No worker: the run stays queued and its viewer waits; once the row is gone (as a prune or an
    operator's DELETE would take it) the socket closes normally, and nothing is logged as a 500."""
    import logging

    from simple_websocket import Client, ConnectionClosed
    from sqlalchemy import delete

    from conftest import wait_for
    from live_client import stream_url
    from webapp.extensions import db
    from webapp.models import Run
    wf = create_wf(client, alice)
    run = post_trigger(client, alice, wf["id"]).get_json()
    ws = Client.connect(stream_url(ws_server, alice, run["id"]), headers=alice.h())
    errors = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = errors.append
    logging.getLogger("webapp").addHandler(handler)
    try:
        with app.app_context():
            db.session.execute(delete(Run).where(Run.public_id == run["id"]))
            db.session.commit()

        def closed():
            try:
                ws.receive(timeout=0.2)
                return False
            except ConnectionClosed:
                return True
        wait_for(closed, 10)
        assert ws.close_reason == 1000 and errors == []
    finally:
        logging.getLogger("webapp").removeHandler(handler)
