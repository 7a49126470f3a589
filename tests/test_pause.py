"""Pausing a workflow with a note: no scheduled fires (a fire prepared ahead of its instant is
cancelled), never silent, manual fires refused only with pauseTriggers; resuming counts the
schedule from now, or with catchUp from the pause (the scheduler's catch-up rule then decides)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import expect

from browsing import login
from conftest import create_wf
from runs_api import base, post_trigger, trigger


def patch(client, m, wf_id: str, body: dict):
    return client.patch(f"{base(m)}/{wf_id}", json=body, headers=m.h())


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.rstrip("Z"))


def test_a_pause_keeps_its_note_and_who_and_stops_the_schedule(client, alice):
    wf = create_wf(client, alice, schedule="*/5 * * * *")
    assert (wf["paused"], wf["pausedAt"], wf["pauseNote"], wf["pauseTriggers"]) == (False, None, None, False)
    r = patch(client, alice, wf["id"], {"paused": True, "pauseNote": "db migration until 14:00"})
    got = r.get_json()
    assert r.status_code == 200 and got["paused"] is True and got["nextRunAt"] is None
    assert got["pauseNote"] == "db migration until 14:00" and got["pausedAt"]
    assert re.fullmatch(r"API key .+ \(hs_live_.+…\)", got["pausedBy"]), got["pausedBy"]
    r = patch(client, alice, wf["id"], {"schedule": "*/10 * * * *"})  # an edit while paused: still no fire
    assert r.get_json()["nextRunAt"] is None and r.get_json()["paused"] is True
    r = patch(client, alice, wf["id"], {"pauseNote": "until 15:00"})  # the note of a paused workflow
    assert r.get_json()["pauseNote"] == "until 15:00" and r.get_json()["pausedAt"] == got["pausedAt"]
    r = patch(client, alice, wf["id"], {"paused": False})
    got = r.get_json()
    assert (got["paused"], got["pausedBy"], got["pauseNote"]) == (False, None, None)
    assert at(got["nextRunAt"]) > datetime.utcnow()  # counted from now: nothing missed is run
    created = create_wf(client, alice, schedule="*/5 * * * *", paused=True, pauseNote="not yet")
    assert (created["paused"], created["nextRunAt"], created["pauseNote"]) == (True, None, "not yet")


@pytest.mark.parametrize("body, field, message", [
    ({"pauseNote": "why"}, "pauseNote", 'only for a paused workflow, or with "paused": true'),
    ({"pauseTriggers": True}, "pauseTriggers", 'only for a paused workflow, or with "paused": true'),
    ({"paused": True, "catchUp": True}, "catchUp", 'only when resuming, with "paused": false'),
    ({"paused": True, "pauseNote": "x" * 501}, "pauseNote", "at most 500 characters"),
    ({"paused": "yes"}, "paused", "must be true or false"),
    ({"paused": None}, "paused", "must not be null"),
])
def test_pause_fields_that_do_not_agree_are_refused(client, alice, body, field, message):
    wf = create_wf(client, alice)
    r = patch(client, alice, wf["id"], body)
    assert r.status_code == 400 and r.get_json()["error"]["fields"] == {field: message}, r.get_json()
    assert client.get(f"{base(alice)}/{wf['id']}", headers=alice.h()).get_json()["paused"] is False


def test_manual_fires_are_refused_only_with_pause_triggers(client, alice):
    wf = create_wf(client, alice, command=["true"])
    patch(client, alice, wf["id"], {"paused": True})
    run = trigger(client, alice, wf["id"])  # a plain pause stops the schedule, not people
    patch(client, alice, wf["id"], {"pauseTriggers": True, "pauseNote": "broken upstream"})
    r = post_trigger(client, alice, wf["id"])
    assert r.status_code == 409, r.get_json()
    assert r.get_json()["error"]["message"] == "the workflow is paused, manual runs too (pauseTriggers): broken upstream"
    client.post(f"{base(alice)}/runs/{run['id']}/cancel", headers=alice.h())
    r = client.post(f"{base(alice)}/runs/{run['id']}/retry", headers=alice.h())
    assert r.status_code == 409 and "paused" in r.get_json()["error"]["message"]
    patch(client, alice, wf["id"], {"paused": False})
    assert post_trigger(client, alice, wf["id"]).status_code == 202


def test_a_pause_cancels_a_fire_prepared_ahead_and_is_never_silent(app, client, alice):
    wf = create_wf(client, alice, schedule="0 0 1 1 *", expectSuccessWithinSec=60)  # its instant far ahead
    from jobs.schedule import fire_due
    from webapp.extensions import db
    from webapp.models import Run, Workflow
    from webapp.models.base import utcnow
    from webapp.services.silence import check_silent
    with app.app_context():
        row = db.session.query(Workflow).filter_by(public_id=wf["id"]).one()
        instant, row_id = row.next_run_at, row.id
        assert fire_due(instant - timedelta(seconds=1)) == 1  # within the lead: made ahead of its instant
        [prepared] = db.session.query(Run).filter_by(workflow_id=row_id).all()
        assert prepared.due_at == instant and prepared.status == "queued"
        db.session.remove()
    patch(client, alice, wf["id"], {"paused": True})
    with app.app_context():
        prepared = db.session.query(Run).filter_by(workflow_id=row_id).one()
        assert (prepared.status, prepared.error) == ("cancelled", "cancelled before its instant: its workflow was paused")
        assert fire_due(utcnow() + timedelta(hours=1)) == 0  # nothing is due while paused
        assert check_silent(utcnow() + timedelta(days=2)) == 0  # quiet on purpose
        db.session.remove()
    got = patch(client, alice, wf["id"], {"paused": False}).get_json()
    assert got["silentSince"] is None
    with app.app_context():  # the silence counts from the resume
        assert check_silent(utcnow() + timedelta(seconds=30)) == 0
        assert check_silent(utcnow() + timedelta(seconds=90)) == 1


def test_a_resume_catches_up_only_when_asked(app, client, alice):
    from jobs.schedule import fire_due
    from webapp.extensions import db
    from webapp.models import Event, Run, Workflow
    from webapp.models.base import utcnow
    runs = {}
    for catch_up in (False, True):
        wf = create_wf(client, alice, name=f"catch-up-{catch_up}", schedule="*/5 * * * *", timeoutSec=3600)
        patch(client, alice, wf["id"], {"paused": True})
        with app.app_context():  # paused 40 minutes ago: eight instants missed
            row = db.session.query(Workflow).filter_by(public_id=wf["id"]).one()
            row.paused_at = utcnow() - timedelta(minutes=40)
            db.session.commit()
            db.session.remove()
        resumed = utcnow()
        got = patch(client, alice, wf["id"], {"paused": False, "catchUp": catch_up}).get_json()
        assert (at(got["nextRunAt"]) < datetime.utcnow()) is catch_up
        with app.app_context():
            fire_due()
            row = db.session.query(Workflow).filter_by(public_id=wf["id"]).one()
            # instants before the resume: the next one may be fired too, when it is within the lead
            runs[catch_up] = db.session.query(Run).filter(Run.workflow_id == row.id, Run.scheduled_for < resumed).all()
            missed = db.session.query(Event).filter_by(workflow_id=row.id, kind="workflow.missed").count()
            assert missed == (1 if catch_up else 0)
            db.session.remove()
    assert runs[False] == []
    [late] = runs[True]  # the latest missed instant, younger than the timeout; the others counted missed
    assert late.trigger == "schedule" and utcnow() - timedelta(minutes=5) <= late.scheduled_for <= utcnow()


@pytest.mark.usefixtures("worker")
def test_pause_and_resume_from_the_workflow_page(page, server, alice, client):
    wf = create_wf(client, alice, name="nightly", schedule="0 3 * * *", command=["true"])
    login(page, server, alice)
    page.goto(f"{server}/teams/{alice.team_id}/workflows/{wf['id']}")
    page.get_by_text("Pause…").click()
    page.get_by_label("Note").fill("vendor API down, see INC-42")
    page.get_by_label("Refuse manual runs too").check()
    page.get_by_role("button", name="Pause scheduled runs").click()
    banner = page.locator("#paused")
    expect(banner).to_contain_text("Paused by alice@example.test")
    expect(banner).to_contain_text("vendor API down, see INC-42")
    expect(banner).to_contain_text("manual runs are refused")
    expect(page.get_by_role("button", name="Run now")).to_be_disabled()
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Workflows").click()
    expect(page.locator("tr", has_text="nightly").locator(".badge", has_text="paused")).to_be_visible()
    page.get_by_role("link", name="nightly").click()
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#paused")).to_have_count(0)
    expect(page.get_by_text("Resumed nightly.")).to_be_visible()
    expect(page.get_by_role("button", name="Run now")).to_be_enabled()
    got = client.get(f"{base(alice)}/{wf['id']}", headers=alice.h()).get_json()
    assert got["paused"] is False and got["nextRunAt"] is not None
