"""Inbound webhooks: POST /hooks/<token> fires the workflow with the body as the run's payload
(/run/workflow/payload, and WORKFLOW_PAYLOAD when short text); tokens shown once, rotated,
revoked; GitHub and Stripe signatures; the body's limit, the trigger budget, pauseTriggers and
Idempotency-Key; the dashboard's section."""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from playwright.sync_api import expect

from browsing import login
from conftest import create_wf, wait_status
from runs_api import base, get, lines


def make(client, m, wf_id: str, signed: bool = False, key: str = "full"):
    return client.post(f"{base(m)}/{wf_id}/webhook", json={"signed": signed}, headers=m.h(key))


def call(client, url_or_token: str, body: bytes = b'{"ref": "main"}', headers: dict | None = None):
    path = url_or_token[url_or_token.index("/hooks/"):] if "/hooks/" in url_or_token else f"/hooks/{url_or_token}"
    return client.post(path, data=body, headers={"Content-Type": "application/json", **(headers or {})})


def test_a_webhook_is_made_shown_once_rotated_and_revoked(client, alice, charlie):
    wf = create_wf(client, alice)
    r = make(client, alice, wf["id"])
    hook = r.get_json()
    assert r.status_code == 201 and hook["token"].startswith("wh_") and hook["url"].endswith("/hooks/" + hook["token"])
    assert hook["secret"] is None and hook["signed"] is False and hook["revokedAt"] is None
    seen = client.get(f"{base(alice)}/{wf['id']}/webhook", headers=alice.h()).get_json()
    assert seen["tokenPrefix"] == hook["token"][:10] and not {"token", "url", "secret"} & set(seen)
    fired = call(client, hook["url"])
    assert fired.status_code == 202, fired.get_json()
    run = get(client, alice, fired.get_json()["runId"])
    assert run["trigger"] == "webhook" and fired.get_json()["url"].endswith("/runs/" + run["id"])
    rotated = make(client, alice, wf["id"]).get_json()
    assert call(client, hook["url"]).status_code == 404  # the old token stops at once
    assert call(client, rotated["url"]).status_code == 202
    assert client.delete(f"{base(alice)}/{wf['id']}/webhook", headers=alice.h()).status_code == 204
    r = call(client, rotated["url"])
    assert r.status_code == 410 and r.get_json()["error"]["message"] == "this webhook was revoked"
    assert call(client, "wh_nothing").status_code == 404
    assert make(client, charlie, wf["id"]).status_code == 404  # another team's workflow
    assert make(client, alice, wf["id"], key="read").status_code == 403


def test_a_webhook_call_is_held_to_the_limits_of_a_fire(app, client, alice, monkeypatch):
    monkeypatch.setitem(app.config, "TRIGGER_RATE_LIMIT", "2 per minute")
    wf = create_wf(client, alice)
    url = make(client, alice, wf["id"]).get_json()["url"]
    r = call(client, url, b"x" * (64 * 1024 + 1))
    assert r.status_code == 413 and r.get_json()["error"]["message"] == "the body is over 64 KiB"
    first = call(client, url, headers={"Idempotency-Key": "push-1"})
    again = call(client, url, headers={"Idempotency-Key": "push-1"})
    assert again.get_json()["runId"] == first.get_json()["runId"] and again.headers["Idempotent-Replayed"] == "true"
    assert call(client, url, b"other", headers={"Idempotency-Key": "push-1"}).status_code == 422
    client.patch(f"{base(alice)}/{wf['id']}", json={"paused": True, "pauseTriggers": True}, headers=alice.h())
    assert call(client, url).status_code == 409
    client.patch(f"{base(alice)}/{wf['id']}", json={"paused": False}, headers=alice.h())
    assert call(client, url).status_code == 202  # the second spent: refusals and the replay spent nothing
    r = call(client, url)
    assert r.status_code == 429 and r.headers["Retry-After"]


def test_a_signed_webhook_takes_github_and_stripe_signatures_and_nothing_else(client, alice):
    wf = create_wf(client, alice)
    hook = make(client, alice, wf["id"], signed=True).get_json()
    secret, body = hook["secret"].encode(), b'{"action": "push"}'
    github = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    assert call(client, hook["url"], body, {"X-Hub-Signature-256": github}).status_code == 202
    t = str(int(time.time()))
    stripe = f"t={t},v1=" + hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert call(client, hook["url"], body, {"Stripe-Signature": stripe}).status_code == 202
    old = str(int(time.time()) - 600)
    stale = f"t={old},v1=" + hmac.new(secret, f"{old}.".encode() + body, hashlib.sha256).hexdigest()
    for headers, message in (
            ({}, "this webhook is signed: send X-Hub-Signature-256 or Stripe-Signature"),
            ({"X-Hub-Signature-256": github}, "X-Hub-Signature-256 does not match the body"),
            ({"Stripe-Signature": stale}, "Stripe-Signature's t is not within 5 minutes of now")):
        r = call(client, hook["url"], body + (b" " if "X-Hub" in str(headers) else b""), headers)
        assert r.status_code == 401 and r.get_json()["error"]["message"] == message, r.get_json()


@pytest.mark.usefixtures("worker")
def test_the_body_reaches_the_container_as_a_file_and_when_short_as_env(client, alice):
    show = ["sh", "-c", 'cat /run/workflow/payload; echo; echo "env=${WORKFLOW_PAYLOAD:-none}"; exit 1']
    wf = create_wf(client, alice, command=show, readOnlyRootfs=True, maxRetries=1, retryBackoffSec=0)
    url = make(client, alice, wf["id"]).get_json()["url"]
    short = json.dumps({"ref": "refs/heads/main"}).encode()
    run = wait_status(client, alice, call(client, url, short).get_json()["runId"])
    assert lines(client, alice, run["id"]) == [short.decode(), f"env={short.decode()}"]
    runs = client.get(f"{base(alice)}/{wf['id']}/runs", headers=alice.h()).get_json()["runs"]
    retry = wait_status(client, alice, next(r["id"] for r in runs if r["retryOf"] == run["id"]))
    assert lines(client, alice, retry["id"]) == [short.decode(), f"env={short.decode()}"]  # a retry keeps it
    long = b"y" * 5000
    run = wait_status(client, alice, call(client, url, long).get_json()["runId"])
    assert lines(client, alice, run["id"]) == [long.decode(), "env=none"]  # over 4 KiB: the file only


@pytest.mark.usefixtures("worker")
def test_make_rotate_and_revoke_a_webhook_from_the_workflow_page(page, server, alice, client):
    wf = create_wf(client, alice, name="deploy")
    login(page, server, alice)
    page.goto(f"{server}/teams/{alice.team_id}/workflows/{wf['id']}")
    page.get_by_label("signed").check()
    page.get_by_role("button", name="Make a webhook").click()
    url = page.locator("#new-hook-url").inner_text()
    assert "/hooks/wh_" in url
    expect(page.locator("#new-hook-secret")).to_contain_text("whsec_")
    assert call(client, url).status_code == 401  # signed: a bare call is refused
    page.goto(f"{server}/teams/{alice.team_id}/workflows/{wf['id']}")  # shown once
    expect(page.locator("#new-hook")).to_have_count(0)
    expect(page.locator("#webhook")).to_contain_text("(signed)")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator("#webhook")).to_contain_text("revoked")
    assert call(client, url).status_code == 410
