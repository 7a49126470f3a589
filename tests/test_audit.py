"""The audit log: a row for each change, from the API, the dashboard, a webhook and the CLI, in the
change's own transaction, with no secret in it; read by admins and owners, filtered, paged and
exported; never changed; pruned after AUDIT_RETENTION_DAYS."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from conftest import create_wf
from runs_api import base, post_trigger
from webapp.extensions import db
from webapp.models import AuditEntry
from webapp.models.base import utcnow


def _rows(app, **where) -> list[AuditEntry]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).filter_by(**where).order_by(AuditEntry.id)).all()
        db.session.expunge_all()
        return rows


def _dump(app) -> str:
    with app.app_context():
        return json.dumps([[r.actor, r.target, r.diff, r.user_agent] for r in db.session.scalars(select(AuditEntry))])


def test_a_workflow_change_is_recorded_with_its_diff_and_never_a_secret_value(app, client, alice):
    wf = create_wf(client, alice, env={"REGION": "eu"})
    r = client.patch(f"{base(alice)}/{wf['id']}", headers={**alice.h(), "User-Agent": "deploy-bot/1.0"},
                     json={"env": {"REGION": "us", "DB_PASSWORD": "hunter2-very-secret"}, "timeoutSec": 90})
    assert r.status_code == 200
    [created] = _rows(app, action="workflow.create")
    assert created.target == wf["id"] and created.diff["env"] == {"added": ["REGION"]}
    [row] = _rows(app, action="workflow.update")
    assert row.team_id == alice.team_id and row.actor.startswith("API key") and row.actor_key_id is not None
    assert row.diff == {"env": {"added": ["DB_PASSWORD"], "changed": ["REGION"]}, "timeoutSec": [60, 90]}
    assert row.user_agent == "deploy-bot/1.0" and row.ip == "127.0.0.1"
    dump = _dump(app)
    assert "hunter2" not in dump and '"eu"' not in dump and '"us"' not in dump


def test_a_refused_change_leaves_no_row(app, client, alice):
    url = f"/api/teams/{alice.team_id}/projects"
    assert client.post(url, json={"name": "etl"}, headers=alice.h()).status_code == 201
    assert client.post(url, json={"name": "etl"}, headers=alice.h()).status_code == 409
    assert client.post(url, json={"name": ""}, headers=alice.h()).status_code == 400
    assert len(_rows(app, action="project.create")) == 1


def test_sign_ins_cancels_keys_webhooks_and_the_cli_each_leave_a_row(app, client, alice):
    session = app.test_client()
    assert session.post("/login", data={"email": alice.email, "password": "wrong"}).status_code == 401
    assert session.post("/login", data={"email": "nobody@example.test", "password": "x"}).status_code == 401
    assert session.post("/login", data={"email": alice.email, "password": alice.password},
                        headers={"User-Agent": "Firefox"}).status_code == 302
    wf = create_wf(client, alice)
    run_id = post_trigger(client, alice, wf["id"]).get_json()["id"]
    assert session.post(f"/runs/{run_id}/cancel").status_code == 302
    hook = client.post(f"{base(alice)}/{wf['id']}/webhook", headers=alice.h()).get_json()
    assert client.post(f"/hooks/{hook['token']}", data=b"{}").status_code == 202
    cli = app.test_cli_runner().invoke(args=["keys", "create", "--team", str(alice.team_id), "--scope", "read"])
    assert cli.exit_code == 0
    assert session.post(f"/teams/{alice.team_id}/api-keys", data={"name": "ci", "role": "member"}).status_code == 302

    failed = _rows(app, action="login.failed")
    assert [(r.team_id, r.actor) for r in failed] == [(alice.team_id, alice.email), (None, "nobody@example.test")]
    [login] = _rows(app, action="login")
    assert login.actor == alice.email and login.user_agent == "Firefox"
    [cancel] = _rows(app, action="run.cancel")
    assert (cancel.actor, cancel.target, cancel.actor_user_id) == (alice.email, run_id, alice.user_id)
    triggers = _rows(app, action="run.trigger")
    assert [t.actor.split(" ")[0] for t in triggers] == ["API", "webhook"]
    assert triggers[1].actor == f"webhook {hook['token'][:10]}…" and triggers[1].ip == "127.0.0.1"
    keys = _rows(app, action="key.create")[-2:]  # the fixture's own three keys first
    assert [(k.actor, k.diff["role"][1]) for k in keys] == [("operator (CLI)", "viewer"), (alice.email, "member")]
    assert all(k.target.endswith("…") and len(k.target) == 17 for k in keys)
    cli = app.test_cli_runner().invoke(args=["users", "set-password", alice.email, "--password", "a-new-long-one"])
    assert cli.exit_code == 0
    [(actor, target)] = [(r.actor, r.target) for r in _rows(app, action="user.password")]
    assert (actor, target) == ("operator (CLI)", alice.email) and "a-new-long-one" not in _dump(app)


def test_admins_read_the_log_filtered_paged_and_exported_and_no_one_else(app, client, alice, charlie):
    wf = create_wf(client, alice)
    for n in range(5):
        client.patch(f"{base(alice)}/{wf['id']}", json={"timeoutSec": 100 + n}, headers=alice.h())
    url = f"/api/teams/{alice.team_id}/audit"
    assert client.get(url, headers=alice.h("read")).status_code == 403  # a viewer key
    assert client.get(url, headers=charlie.h()).status_code == 404
    first = client.get(f"{url}?action=workflow.update&limit=2", headers=alice.h()).get_json()
    assert [e["diff"]["timeoutSec"][1] for e in first["entries"]] == [104, 103]
    second = client.get(f"{url}?action=workflow.update&limit=2&cursor={first['nextCursor']}", headers=alice.h())
    assert [e["diff"]["timeoutSec"][1] for e in second.get_json()["entries"]] == [102, 101]
    assert client.get(f"{url}?target={wf['id']}", headers=alice.h()).get_json()["entries"][-1]["action"] == \
        "workflow.create"
    later = (utcnow() + timedelta(hours=1)).isoformat() + "Z"
    assert client.get(f"{url}?since={later}", headers=alice.h()).get_json()["entries"] == []
    assert client.get(f"{url}?until={later}&actor=nobody", headers=alice.h()).get_json()["entries"] == []
    bad = client.get(f"{url}?since=yesterday", headers=alice.h())
    assert bad.status_code == 400 and "since" in bad.get_json()["error"]["fields"]
    assert client.get(f"{url}?limit=0", headers=alice.h()).status_code == 400
    for path in (url, f"{url}/export"):  # PostgreSQL cannot compare with a NUL: a 400, not a 500
        bad = client.get(f"{path}?actor=%00", headers=alice.h())
        assert bad.status_code == 400 and "actor" in bad.get_json()["error"]["fields"]
    export = client.get(f"{url}/export?action=workflow.update", headers=alice.h())
    assert export.mimetype == "application/x-ndjson"
    lines = [json.loads(line) for line in export.get_data(as_text=True).splitlines()]
    assert len(lines) == 5 and lines[0]["diff"] == {"timeoutSec": [103, 104]}


def test_a_row_is_never_changed_and_no_route_writes_one(app, client, alice):
    create_wf(client, alice)
    with app.app_context():
        row = db.session.scalars(select(AuditEntry)).first()
        row.actor = "someone else"
        with pytest.raises(RuntimeError, match="never changed"):
            db.session.commit()
        db.session.rollback()
    for rule in app.url_map.iter_rules():
        if "audit" in rule.rule:
            assert rule.methods - {"HEAD", "OPTIONS"} == {"GET"}, rule.rule


def test_rows_older_than_the_retention_are_pruned_by_the_sweep(app, client, alice, monkeypatch):
    from jobs.sweeper import sweep
    create_wf(client, alice)
    with app.app_context():
        db.session.add(AuditEntry(team_id=alice.team_id, at=utcnow() - timedelta(days=400), actor="old",
                                  action="workflow.update", target_type="workflow", target="wf_old"))
        db.session.add(AuditEntry(team_id=alice.team_id, at=utcnow() - timedelta(days=20), actor="recent",
                                  action="workflow.update", target_type="workflow", target="wf_recent"))
        db.session.commit()
        monkeypatch.setitem(app.config, "AUDIT_RETENTION_DAYS", 30)
        assert sweep()["audit_pruned"] == 1
        actors = set(db.session.scalars(select(AuditEntry.actor)))
        db.session.remove()
    assert "old" not in actors and "recent" in actors


def test_the_audit_page_filters_by_url_and_links_the_export(app, alice):
    session = app.test_client()
    session.post("/login", data={"email": alice.email, "password": alice.password})
    session.post(f"/teams/{alice.team_id}/api-keys", data={"name": "ci", "role": "admin"})
    page = session.get(f"/teams/{alice.team_id}/audit?action=key.create").get_data(as_text=True)
    assert "key.create" in page and "hs_live_" in page and "login</code>" not in page
    assert f"/api/teams/{alice.team_id}/audit/export?action=key.create" in page
    assert session.get(f"/teams/{alice.team_id}/audit?since=nonsense").status_code == 400
