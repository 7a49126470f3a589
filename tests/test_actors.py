"""Keys that expire (401 "key expired"), and who fired and who cancelled each run: in the API
(firedBy, cancelledBy) and on the run page, for members, keys, webhooks and backfills."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from playwright.sync_api import expect

from browsing import login
from conftest import create_wf, wait_status
from runs_api import STOPS_AT_ONCE, base, get, post_trigger

KEY_WORDS = re.compile(r"API key \S+ \(hs_live_\S+…\)")


def test_a_key_is_refused_once_it_has_expired(app, client, alice):
    cli = app.test_cli_runner()
    result = cli.invoke(args=["keys", "create", "--team", str(alice.team_id), "--scope", "full",
                              "--expires-in-days", "30"])
    assert result.exit_code == 0, result.output
    raw = result.output.strip().splitlines()[-1]
    listing = f"/api/teams/{alice.team_id}/projects"
    assert client.get(listing, headers={"Authorization": f"Bearer {raw}"}).status_code == 200
    from webapp.extensions import db
    from webapp.models import ApiKey
    with app.app_context():
        key = db.session.query(ApiKey).filter_by(prefix=raw[:16]).one()
        assert key.last_used_at is not None
        # stamped on the database's clock as measured (models/clock.py): off this host's by that measure's ms
        assert timedelta(days=29) < key.expires_at - datetime.utcnow() <= timedelta(days=30, seconds=1)
        key.expires_at = datetime.utcnow() - timedelta(seconds=1)
        db.session.commit()
    r = client.get(listing, headers={"Authorization": f"Bearer {raw}"})
    assert r.status_code == 401 and r.get_json()["error"] == {"code": "key_expired", "message": "key expired"}
    for days in ("0", "3651"):
        result = cli.invoke(args=["keys", "create", "--team", str(alice.team_id), "--scope", "read",
                                  "--expires-in-days", days])
        assert result.exit_code == 1 and "a key expires after 1 to 3650 days" in result.output


def test_each_run_says_who_fired_it_and_who_cancelled_it(app, client, alice):
    wf = create_wf(client, alice, schedule="0 * * * *", command=["sleep", "30"])
    run = post_trigger(client, alice, wf["id"]).get_json()  # no worker: it stays queued
    assert KEY_WORDS.fullmatch(run["firedBy"]) and run["cancelledBy"] is None, run
    client.post(f"{base(alice)}/runs/{run['id']}/cancel", headers=alice.h())
    got = get(client, alice, run["id"])
    assert got["status"] == "cancelled" and got["cancelledBy"] == run["firedBy"]
    retry = client.post(f"{base(alice)}/runs/{run['id']}/retry", headers=alice.h()).get_json()
    assert retry["firedBy"] == run["firedBy"]
    hook = client.post(f"{base(alice)}/{wf['id']}/webhook", headers=alice.h()).get_json()
    fired = client.post(hook["url"][hook["url"].index("/hooks/"):], data=b"{}").get_json()
    assert get(client, alice, fired["runId"])["firedBy"] == f"webhook {hook['tokenPrefix']}…"
    hour = datetime.utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    bf = client.post(f"{base(alice)}/{wf['id']}/backfill", headers=alice.h(),
                     json={"from": hour.isoformat() + "Z", "to": hour.isoformat() + "Z"}).get_json()
    backfilled = [r for r in client.get(f"{base(alice)}/{wf['id']}/runs", headers=alice.h()).get_json()["runs"]
                  if r["backfill"] == bf["id"]]
    assert [r["firedBy"] for r in backfilled] == [bf["createdBy"]] and KEY_WORDS.fullmatch(bf["createdBy"])


def test_the_run_page_says_who_fired_and_who_cancelled(page, server, alice, client, worker):
    wf = create_wf(client, alice, name="long", command=STOPS_AT_ONCE, timeoutSec=120)
    login(page, server, alice)
    page.goto(f"{server}/teams/{alice.team_id}/workflows/{wf['id']}")
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#fired-by")).to_have_text("alice@example.test")
    run_id = page.url.rstrip("/").split("/")[-1]
    wait_status(client, alice, run_id, statuses=("running",))
    page.reload()
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("#cancelled-by")).to_have_text("alice@example.test")
    assert wait_status(client, alice, run_id)["status"] == "cancelled"


def test_a_key_with_an_expiry_from_the_api_keys_page(page, server, alice):
    login(page, server, alice)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("ci-deploys")
    page.get_by_label("Expires after (days)").fill("soon")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#expiresInDays-error")).to_have_text("a whole number of days, 1 to 3650")
    page.get_by_label("Name").fill("ci-deploys")
    page.get_by_label("Expires after (days)").fill("30")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#new-key")).to_have_text(re.compile(r"^hs_live_"))
    row = page.locator("tr", has_text="ci-deploys")
    until = (datetime.utcnow() + timedelta(days=30)).strftime("%Y-%m-%d")
    expect(row).to_contain_text(until)
    expect(row.locator(".badge")).to_have_text("active")
