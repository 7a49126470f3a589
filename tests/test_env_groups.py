"""Env groups: a team's named, versioned env entries, encrypted at rest, secret values write-only;
a run gets its workflow's groups in order under the workflow's env and the trigger's, pins their
versions (a retry gets the same values after a change), and a group in use cannot be deleted
(API, real engine, Chromium)."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browsing import login
from conftest import create_wf, wait_status
from runs_api import base, lines, trigger

LONG = "x" * 65536  # the "long secret" a workflow's own env (4 KiB a value) is too small for
ECHO = ["sh", "-c", 'echo "A=$A B=$B C=$C LONG=${#LONG}"']


def groups(m) -> str:
    return f"/api/teams/{m.team_id}/env-groups"


def make(client, m, name: str, entries: list[dict], key: str = "full"):
    return client.post(groups(m), headers=m.h(key), json={"name": name, "entries": entries})


def entry(key: str, value: str, secret: bool = False) -> dict:
    return {"key": key, "value": value, "secret": secret}


def test_a_group_keeps_secret_values_write_only_and_each_change_is_a_version(app, client, alice):
    r = make(client, alice, "database", [entry("DB_URL", "postgres://app:hunter2@db/app", secret=True),
                                         entry("DB_POOL", "5"), entry("LONG", LONG, secret=True)])
    assert r.status_code == 201, r.get_json()
    got = r.get_json()
    assert got["entries"] == [entry("DB_URL", None, True), entry("DB_POOL", "5"), entry("LONG", None, True)]
    assert (got["name"], got["version"], got["usedBy"]) == ("database", 1, [])
    assert "hunter2" not in client.get(groups(alice), headers=alice.h()).get_data(as_text=True)
    assert "hunter2" not in client.get(f"{groups(alice)}/database", headers=alice.h("read")).get_data(as_text=True)
    r = client.patch(f"{groups(alice)}/database", headers=alice.h(),
                     json={"entries": [entry("DB_POOL", "10")], "remove": ["LONG"]})
    assert r.status_code == 200 and r.get_json()["version"] == 2, r.get_json()
    assert r.get_json()["entries"] == [entry("DB_URL", None, True), entry("DB_POOL", "10")]
    from sqlalchemy import text

    from webapp.extensions import db
    with app.app_context():  # encrypted at rest: neither version's bytes hold a value
        stored = db.session.execute(text("SELECT entries FROM env_group_versions")).scalars().all()
        assert len(stored) == 2 and not any(b"hunter2" in bytes(s) or b'"5"' in bytes(s) for s in stored)


@pytest.mark.parametrize("body, fields", [
    ({"name": "Bad Name", "entries": []}, {"name": "lowercase letters, digits, - and _, starting with a letter or digit"}),
    ({"name": "g", "entries": [entry("1X", "v")]}, {"entries": "'1X' is not a valid environment variable name"}),
    ({"name": "g", "entries": [entry("A", "1"), entry("A", "2")]}, {"entries": "A is listed twice"}),
    ({"name": "g", "entries": [entry("A", "x" * 65537)]}, {"entries": "at most 65536 characters"}),
    ({"name": "g", "entries": [entry(f"K{i}", "x" * 60000) for i in range(3)]},
     {"entries": "180006 bytes of keys and values; at most 131072"}),
    ({"name": "g", "entries": [{"key": "A", "value": 1}]}, {"entries": "must be a string"}),
])
def test_bad_groups_are_refused_naming_the_field(client, alice, body, fields):
    r = client.post(groups(alice), headers=alice.h(), json=body)
    assert r.status_code == 400 and r.get_json()["error"]["fields"] == fields, r.get_json()


def test_who_may_change_groups_and_names_are_the_teams_own(client, alice, charlie):
    assert make(client, alice, "shared", [entry("A", "1")]).status_code == 201
    r = make(client, alice, "shared", [])
    assert r.status_code == 400 and r.get_json()["error"]["fields"] == {"name": "the team has an env group named shared"}
    assert make(client, alice, "other", [], key="read").status_code == 403
    assert make(client, alice, "other", [], key="test").status_code == 403  # Production workflows would use it
    assert make(client, charlie, "shared", [entry("A", "2")]).status_code == 201  # another team's name space
    assert client.get(f"/api/teams/{alice.team_id}/env-groups/shared", headers=charlie.h()).status_code == 404
    for odd in ("Shared", "a%00b", "x" * 41):  # names no group can have: not found, before any query
        assert client.get(f"{groups(alice)}/{odd}", headers=alice.h()).status_code == 404
    r = client.patch(f"{groups(alice)}/shared", headers=alice.h(), json={"remove": ["NOPE"]})
    assert r.status_code == 400 and r.get_json()["error"]["fields"] == {"remove": "the group has no NOPE"}
    r = client.post(f"/api/projects/{alice.team_id}/{alice.project_id}/workflows", headers=alice.h(),
                    json={"projectId": alice.project_id, "name": "x", "image": "busybox", "envGroups": ["missing"]})
    assert r.status_code == 400 and r.get_json()["error"]["fields"] == {"envGroups": "the team has no env group named missing"}


def test_a_run_gets_its_groups_in_order_under_its_env_and_keeps_their_versions(app, client, alice, worker):
    make(client, alice, "first", [entry("A", "first-a"), entry("B", "first-b"), entry("LONG", LONG, secret=True)])
    make(client, alice, "second", [entry("B", "second-b", secret=True), entry("C", "second-c")])
    wf = create_wf(client, alice, command=ECHO, envGroups=["first", "second"], env={"C": "workflow-c"})
    assert wf["envGroups"] == ["first", "second"]
    run = trigger(client, alice, wf["id"])
    assert wait_status(client, alice, run["id"])["status"] == "succeeded"
    assert lines(client, alice, run["id"]) == ["A=first-a B=second-b C=workflow-c LONG=65536"]
    assert run["env"] == {"C": "workflow-c"}  # the groups' values are not the run's to show
    client.patch(f"{groups(alice)}/first", headers=alice.h(), json={"entries": [entry("A", "changed")]})
    got = client.get(f"{base(alice)}/runs/{run['id']}", headers=alice.h()).get_json()
    assert got["envGroups"] == [{"name": "first", "version": 1, "latest": 2}, {"name": "second", "version": 1, "latest": 1}]
    retry = client.post(f"{base(alice)}/runs/{run['id']}/retry", headers=alice.h()).get_json()
    assert wait_status(client, alice, retry["id"])["status"] == "succeeded"
    assert lines(client, alice, retry["id"]) == ["A=first-a B=second-b C=workflow-c LONG=65536"]  # v1's values
    fresh = trigger(client, alice, wf["id"], {"C": "trigger-c"})
    assert wait_status(client, alice, fresh["id"])["status"] == "succeeded"
    assert lines(client, alice, fresh["id"]) == ["A=changed B=second-b C=trigger-c LONG=65536"]
    r = client.delete(f"{groups(alice)}/first", headers=alice.h())
    assert r.status_code == 409 and r.get_json()["error"]["message"] == (
        "the env group first is used by 1 workflow: job; remove it from them first")
    client.patch(f"{base(alice)}/{wf['id']}", headers=alice.h(), json={"envGroups": ["second"]})
    assert client.delete(f"{groups(alice)}/first", headers=alice.h()).status_code == 204
    again = client.post(f"{base(alice)}/runs/{run['id']}/retry", headers=alice.h()).get_json()
    assert wait_status(client, alice, again["id"])["status"] == "succeeded"  # the deleted group's v1 still
    assert lines(client, alice, again["id"]) == ["A=first-a B=second-b C=workflow-c LONG=65536"]
    assert client.get(f"{base(alice)}/runs/{again['id']}", headers=alice.h()).get_json()["envGroups"][0] == \
        {"name": "first", "version": 1, "latest": None}


def test_env_groups_from_the_dashboard(page, server, alice, client):
    wf = create_wf(client, alice, name="nightly", command=["true"])
    login(page, server, alice)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Env groups").click()
    page.get_by_label("Name").fill("mail")
    page.get_by_label("Variables").fill("SMTP_HOST=smtp.example.test\nBROKEN LINE")
    page.get_by_label("Secrets").fill("SMTP_PASSWORD=s3cret-value")
    page.get_by_role("button", name="Make the group").click()
    expect(page.locator("#variables-error")).to_have_text("line 2: write KEY=value")
    page.get_by_label("Variables").fill("SMTP_HOST=smtp.example.test")
    page.get_by_label("Secrets").fill("SMTP_PASSWORD=s3cret-value")
    page.get_by_role("button", name="Make the group").click()
    expect(page.get_by_text("Made the env group mail")).to_be_visible()
    expect(page.locator("#env-entries")).to_contain_text("smtp.example.test")
    expect(page.locator("#env-entries")).to_contain_text("secret: write-only")
    assert "s3cret-value" not in page.content()
    page.get_by_label("Set variables").fill("SMTP_HOST=mx.example.test")
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.get_by_text("Saved mail as version 2.")).to_be_visible()
    page.goto(f"{server}/teams/{alice.team_id}/workflows/{wf['id']}/edit")
    page.get_by_label("Env groups").fill("mail, nothere")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#envGroups-error")).to_have_text("the team has no env group named nothere")
    page.get_by_label("Env groups").fill("mail")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#env-groups")).to_have_text("mail")
    page.goto(f"{server}/teams/{alice.team_id}/env-groups/mail")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("Not deleted: the env group mail is used by 1 workflow: nightly")).to_be_visible()
    run = trigger(client, alice, wf["id"])
    page.goto(f"{server}/runs/{run['id']}")
    expect(page.locator("#run-env-groups")).to_have_text("mail v2")
