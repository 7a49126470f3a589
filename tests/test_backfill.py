"""Catch-up window and backfill: after a scheduler outage every missed instant younger than the
workflow's catchUpWindowSec runs, oldest first, and one workflow.missed counts the older ones; a
backfill runs one run per instant of a past range, at most maxConcurrent at once, skipping
instants that have a run, cancellable as a whole (API, real engine, Chromium)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import expect

from browsing import login
from conftest import create_wf, wait_for, wait_status
from runs_api import STOPS_AT_ONCE, base


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.rstrip("Z"))


def iso(moment: datetime) -> str:
    return moment.isoformat() + "Z"


def hours_ago(n: int) -> datetime:
    return datetime.utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=n)


def backfill(client, m, wf_id: str, start: datetime, end: datetime, most: int = 1):
    return client.post(f"{base(m)}/{wf_id}/backfill", headers=m.h(),
                       json={"from": iso(start), "to": iso(end), "maxConcurrent": most})


def get_backfill(client, m, bf_id: str) -> dict:
    r = client.get(f"{base(m)}/backfills/{bf_id}", headers=m.h())
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def runs_of(client, m, wf_id: str) -> list[dict]:
    return client.get(f"{base(m)}/{wf_id}/runs?limit=100", headers=m.h()).get_json()["runs"]


# -- the catch-up window, with fixed clocks, through the scheduler's own code -----------------
def _outage(app, wf_id: str, since: datetime, now: datetime, passes: int) -> tuple[list, list, datetime]:
    """The scheduler back at `now` after being down since `since`: `passes` ticks; returns the
    runs' instants, the workflow.missed events' details, and the next instant stored."""
    from jobs.schedule import fire_due
    from webapp.extensions import db
    from webapp.models import Event, Run, Workflow
    with app.app_context():
        db.session.query(Workflow).filter_by(public_id=wf_id).update({"next_run_at": since})
        db.session.commit()
        fired = [fire_due(now) for _ in range(passes)]
        wf = db.session.query(Workflow).filter_by(public_id=wf_id).one()
        runs = [r.scheduled_for for r in db.session.query(Run).filter_by(workflow_id=wf.id).order_by(Run.id)]
        events = [e.detail for e in db.session.query(Event).filter_by(workflow_id=wf.id, kind="workflow.missed")]
        assert sum(fired) == len(runs)
        return runs, events, wf.next_run_at


def test_the_catch_up_window_runs_every_missed_instant_younger_than_it_oldest_first(app, client, alice):
    wf = create_wf(client, alice, schedule="* * * * *", timeoutSec=60, catchUpWindowSec=300)
    assert wf["catchUpWindowSec"] == 300
    runs, events, nxt = _outage(app, wf["id"], at("2026-01-01T00:01:00"), at("2026-01-01T00:07:30"), passes=7)
    # 00:02:30 is the window's edge: 00:03 to 00:07 run, one a tick, oldest first; 00:01 and 00:02 do not
    assert runs == [at(f"2026-01-01T00:0{m}:00") for m in (3, 4, 5, 6, 7)]
    assert events == ["the scheduler was not running: 2 scheduled instants not run "
                      "(older than its catch-up window (300 s))"]
    assert nxt == at("2026-01-01T00:08:00")


def test_instants_all_older_than_the_window_are_counted_in_one_missed_event(app, client, alice):
    wf = create_wf(client, alice, schedule="*/10 * * * *", catchUpWindowSec=60)
    runs, events, nxt = _outage(app, wf["id"], at("2026-01-01T00:10:00"), at("2026-01-01T01:05:00"), passes=2)
    assert runs == [] and nxt == at("2026-01-01T01:10:00")
    assert events == ["the scheduler was not running: 6 scheduled instants not run "
                      "(older than its catch-up window (60 s))"]
    plain = create_wf(client, alice, name="plain", schedule="* * * * *", timeoutSec=600)  # today's rule
    runs, events, _ = _outage(app, plain["id"], at("2026-01-01T00:01:00"), at("2026-01-01T00:07:30"), passes=2)
    assert runs == [at("2026-01-01T00:07:00")] and len(events) == 1 and "6 scheduled instants" in events[0]


@pytest.mark.parametrize("value, message", [
    (0, "must be at least 1"), (7 * 86400 + 1, "must be at most 604800"), ("1h", None), (True, None)])
def test_the_catch_up_window_is_validated(client, alice, value, message):
    wf = create_wf(client, alice, schedule="* * * * *")
    r = client.patch(f"{base(alice)}/{wf['id']}", headers=alice.h(), json={"catchUpWindowSec": value})
    assert r.status_code == 400 and "catchUpWindowSec" in r.get_json()["error"]["fields"], r.get_json()
    if message:
        assert r.get_json()["error"]["fields"]["catchUpWindowSec"] == message
    r = client.patch(f"{base(alice)}/{wf['id']}", headers=alice.h(), json={"catchUpWindowSec": 3600})
    assert r.get_json()["catchUpWindowSec"] == 3600
    r = client.patch(f"{base(alice)}/{wf['id']}", headers=alice.h(), json={"catchUpWindowSec": None})
    assert r.get_json()["catchUpWindowSec"] is None


# -- backfill ---------------------------------------------------------------------------------
def test_backfill_requests_are_validated(client, alice):
    wf = create_wf(client, alice, schedule="* * * * *")
    manual = create_wf(client, alice, name="manual")
    future = datetime.utcnow() + timedelta(hours=1)
    cases = [
        (wf, {"from": iso(hours_ago(2)), "to": iso(future)}, {"to": "must not be in the future"}),
        (wf, {"from": iso(hours_ago(1)), "to": iso(hours_ago(2))}, {"from": "must not be after to"}),
        (wf, {"from": iso(hours_ago(30)), "to": iso(hours_ago(1))},
         {"to": "at most 1,000 instants a request: end the range earlier"}),
        (wf, {"from": "2026-01-01T00:00:10Z", "to": "2026-01-01T00:00:20Z"},
         {"from": "no instant of the schedule from here to `to`"}),
        (manual, {"from": iso(hours_ago(2)), "to": iso(hours_ago(1))},
         {"schedule": "a backfill runs a schedule's instants"}),
        (wf, {"from": "yesterday", "to": iso(hours_ago(1)), "maxConcurrent": 51},
         {"from": "must be an ISO 8601 time, e.g. 2026-12-01T00:00:00Z", "maxConcurrent": "must be at most 50"}),
        (wf, {"to": iso(hours_ago(1)), "maxConcurrent": 0}, {"from": "required", "maxConcurrent": "must be at least 1"}),
        (wf, {"from": "0001-01-01T00:00:00+01:00", "to": "0001-01-01T05:00:00Z"},
         {"from": "must be an ISO 8601 time, e.g. 2026-12-01T00:00:00Z", "to": "must be in 1970 or later"}),
    ]
    for target, body, fields in cases:
        r = client.post(f"{base(alice)}/{target['id']}/backfill", headers=alice.h(), json=body)
        assert r.status_code == 400 and r.get_json()["error"]["fields"] == fields, (body, r.get_json())
    assert runs_of(client, alice, wf["id"]) == []
    r = client.post(f"{base(alice)}/{wf['id']}/backfill", headers=alice.h("read"),
                    json={"from": iso(hours_ago(2)), "to": iso(hours_ago(1))})
    assert r.status_code == 403


def test_a_backfill_runs_each_instant_once_at_most_n_at_once_and_skips_taken_ones(app, client, alice, worker):
    wf = create_wf(client, alice, schedule="0 * * * *", command=["sleep", "0.5"])
    first = backfill(client, alice, wf["id"], hours_ago(3), hours_ago(3)).get_json()  # one instant
    assert (first["instants"], first["fired"], first["state"]) == (1, 1, "running"), first
    wait_for(lambda: get_backfill(client, alice, first["id"])["state"] == "done", 60)
    r = backfill(client, alice, wf["id"], hours_ago(5) - timedelta(minutes=30), hours_ago(1), most=2)
    assert r.status_code == 201, r.get_json()
    bf = r.get_json()
    assert (bf["instants"], bf["maxConcurrent"], bf["workflowId"]) == (5, 2, wf["id"])
    assert at(bf["from"]) == hours_ago(5) - timedelta(minutes=30) and at(bf["to"]) == hours_ago(1)
    wait_for(lambda: get_backfill(client, alice, bf["id"])["state"] == "done", 120)
    done = get_backfill(client, alice, bf["id"])
    assert (done["fired"], done["skipped"], done["runs"]) == (4, 1, {"succeeded": 4}), done
    runs = runs_of(client, alice, wf["id"])
    assert sorted(at(r["scheduledFor"]) for r in runs) == [hours_ago(n) for n in (5, 4, 3, 2, 1)]
    ours = [r for r in runs if r["backfill"] == bf["id"]]
    assert len(ours) == 4 and {r["trigger"] for r in runs} == {"backfill"}
    assert hours_ago(3) not in {at(r["scheduledFor"]) for r in ours}  # taken by the first backfill
    for r in ours:  # never more than two of its runs queued or running at once
        queued = at(r["queuedAt"])
        active = [o for o in ours if at(o["queuedAt"]) <= queued < at(o["finishedAt"])]
        assert len(active) <= 2, (r["id"], [o["id"] for o in active])
    listed = client.get(f"{base(alice)}/{wf['id']}/backfills", headers=alice.h()).get_json()["backfills"]
    assert [b["id"] for b in listed] == [bf["id"], first["id"]]


def test_cancelling_a_backfill_stops_its_instants_and_its_runs(app, client, alice, worker):
    wf = create_wf(client, alice, schedule="0 * * * *", command=STOPS_AT_ONCE, timeoutSec=120)
    bf = backfill(client, alice, wf["id"], hours_ago(4), hours_ago(1)).get_json()
    run = runs_of(client, alice, wf["id"])[0]
    wait_status(client, alice, run["id"], statuses=("running",))
    r = client.post(f"{base(alice)}/backfills/{bf['id']}/cancel", headers=alice.h())
    assert r.status_code == 202 and r.get_json()["state"] == "cancelled", r.get_json()
    assert wait_status(client, alice, run["id"])["status"] == "cancelled"
    from webapp.services.backfills import advance_all
    with app.app_context():
        assert advance_all() == 0
    assert [r["id"] for r in runs_of(client, alice, wf["id"])] == [run["id"]]
    got = get_backfill(client, alice, bf["id"])
    assert (got["fired"], got["instants"], got["runs"]) == (1, 4, {"cancelled": 1}), got
    again = client.post(f"{base(alice)}/backfills/{bf['id']}/cancel", headers=alice.h())
    assert again.status_code == 409


def test_a_runs_end_does_not_wait_for_its_backfill_held_by_another_transaction(app, client, alice):
    """A cancel holds the backfill's row, then the runs': a run's end, holding its own row, must
    not wait for the backfill's (else the two deadlock). It leaves the next instant to the sweep."""
    import threading

    from sqlalchemy import text

    from webapp.extensions import db
    from webapp.models import Run
    from webapp.services.backfills import advance_all
    from webapp.services.lifecycle import complete
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("row locks are PostgreSQL's: SQLite has one writer at a time, and no lock to skip")
    wf = create_wf(client, alice, schedule="0 * * * *")
    bf = backfill(client, alice, wf["id"], hours_ago(3), hours_ago(1)).get_json()
    first = runs_of(client, alice, wf["id"])[0]["id"]
    ended = threading.Event()

    def end_it():
        with app.app_context():
            complete(db.session.query(Run).filter_by(public_id=first).one(), "succeeded")
            ended.set()
    with app.app_context():
        holder = db.engine.connect()
        held = holder.begin()
        holder.execute(text("SELECT id FROM backfills WHERE public_id = :p FOR UPDATE"), {"p": bf["id"]})
        ender = threading.Thread(target=end_it)
        ender.start()
        try:
            assert ended.wait(10), "the run's end waited for the backfill's row"
        finally:
            held.rollback()
            holder.close()
            ender.join(30)
        assert [r["id"] for r in runs_of(client, alice, wf["id"])] == [first]
        assert advance_all() == 1  # the sweep fires the next instant
    assert get_backfill(client, alice, bf["id"])["fired"] == 2


def test_a_backfill_from_the_workflow_page(page, server, alice, client):
    wf = create_wf(client, alice, name="hourly", schedule="0 * * * *", command=["true"])
    login(page, server, alice)
    page.goto(f"{server}/teams/{alice.team_id}/workflows/{wf['id']}")
    expect(page.locator("#catch-up")).to_contain_text("only the latest missed instant runs")
    page.get_by_text("Backfill a past range…").click()
    page.get_by_label("From (UTC)").fill(hours_ago(3).strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_label("To (UTC)").fill((datetime.utcnow() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_role("button", name="Run the range").click()
    expect(page.locator("#backfill-to-error")).to_have_text("must not be in the future")
    page.get_by_label("To (UTC)").fill(hours_ago(1).strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_label("At most at once").fill("2")
    page.get_by_role("button", name="Run the range").click()
    expect(page.get_by_text("Backfill started: 3 instants, at most 2 at once.")).to_be_visible()
    row = page.locator("#backfill-list tbody tr").first
    expect(row).to_have_attribute("data-state", "running")
    expect(row).to_contain_text("2 of 3 instants run")  # no worker here: two queued, one waiting
    expect(row.locator(".badge", has_text="2 queued")).to_be_visible()
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("Backfill cancelled")).to_be_visible()
    row = page.locator("#backfill-list tbody tr").first
    expect(row).to_have_attribute("data-state", "cancelled")
    expect(row.locator(".badge", has_text="2 cancelled")).to_be_visible()
    run = runs_of(client, alice, wf["id"])[0]
    page.goto(f"{server}/runs/{run['id']}")
    expect(page.locator("#run-backfill")).to_contain_text(run["backfill"])
    page.goto(f"{server}/teams/{alice.team_id}/workflows/{wf['id']}/edit")
    page.get_by_label("Catch-up window (s)").fill("0")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#catchUpWindowSec-error")).to_have_text("must be at least 1")
    page.get_by_label("Catch-up window (s)").fill("3600")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#catch-up")).to_have_text("every missed instant of the last 3600 s runs, oldest first")
    assert {r["status"] for r in runs_of(client, alice, wf["id"])} == {"cancelled"}


def test_an_operator_pauses_resumes_and_backfills_from_the_cli(app, client, alice):
    one = create_wf(client, alice, name="one", schedule="0 * * * *")
    two = create_wf(client, alice, name="two", schedule="*/5 * * * *")
    cli = app.test_cli_runner()
    result = cli.invoke(args=["workflows", "pause", "--team", str(alice.team_id), "--note", "db maintenance"])
    assert result.exit_code == 0, result.output
    assert [line["workflow"] for line in map(json.loads, result.output.splitlines())] == [one["id"], two["id"]]
    got = client.get(f"{base(alice)}/{two['id']}", headers=alice.h()).get_json()
    assert (got["paused"], got["pauseNote"], got["pausedBy"]) == (True, "db maintenance", "operator (CLI)")
    result = cli.invoke(args=["workflows", "resume", two["id"]])
    assert result.exit_code == 0 and json.loads(result.output)["paused"] is False, result.output
    result = cli.invoke(args=["workflows", "backfill", one["id"], "--from", iso(hours_ago(3)), "--to",
                              iso(hours_ago(1)), "--max-concurrent", "2"])
    assert result.exit_code == 0, result.output
    assert {k: v for k, v in json.loads(result.output).items() if k != "backfill"} == {"instants": 3, "fired": 2}
    result = cli.invoke(args=["workflows", "backfill", one["id"], "--from", "soon", "--to", iso(hours_ago(1))])
    assert result.exit_code == 1 and "from: must be an ISO 8601 time" in result.output
    result = cli.invoke(args=["workflows", "pause", "wf_nothere"])
    assert result.exit_code == 1 and "no workflow wf_nothere" in result.output
