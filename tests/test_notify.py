"""Notifications against real receivers on 127.0.0.1: an HTTP server for Slack/Discord/webhook
shapes and an aiosmtpd SMTP server; deliveries made by a real worker process."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time

import pytest

from conftest import create_wf, wait_for
from receivers import add_channel

BASE_URL = "http://127.0.0.1:5999"


@pytest.fixture
def notifier(procs, smtp):
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp[1]), "NOTIFY_SLOTS": "2"}
    procs.worker(2, env=env)
    procs.scheduler(env=env)
    return smtp[0]


def runs_of(client, m, wf_id):
    return client.get(f"/api/workflows/{m.team_id}/workflows/{wf_id}/runs", headers=m.h()).get_json()["runs"]


def test_one_failure_notifies_each_channel_once_then_recovery(client, alice, receiver, notifier):
    mailbox = notifier
    add_channel(client, alice, "slack", receiver.url + "/slack")
    add_channel(client, alice, "discord", receiver.url + "/discord")
    hook = add_channel(client, alice, "webhook", receiver.url + "/hook", ("workflow.failed", "workflow.recovered"))
    add_channel(client, alice, "email", "ops@example.test, oncall@example.test")
    wf = create_wf(client, alice, name="nightly-backup", command=["sh", "-c", "echo failing; exit 3"],
                   maxRetries=2, retryBackoffSec=0)
    client.post(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}/trigger", headers=alice.h())
    wait_for(lambda: len(runs_of(client, alice, wf["id"])) == 3
             and all(r["status"] == "failed" for r in runs_of(client, alice, wf["id"])), 60)
    wait_for(lambda: receiver.on("/slack") and receiver.on("/discord") and receiver.on("/hook")
             and mailbox.messages, 30)
    final = runs_of(client, alice, wf["id"])[0]
    link = f"{BASE_URL}/runs/{final['id']}"
    assert final["attempt"] == 3

    time.sleep(2)  # nothing more arrives
    assert len(receiver.on("/slack")) == len(receiver.on("/discord")) == len(receiver.on("/hook")) == 1
    assert len(mailbox.messages) == 1

    _assert_the_messages_say_it(receiver, mailbox, hook, link)

    # the deep link opens the run page for a logged-in member
    client.post("/login", data={"email": alice.email, "password": alice.password})
    page = client.get(link.removeprefix(BASE_URL))
    assert page.status_code == 200 and final["id"] in page.get_data(as_text=True)

    # a later success: one workflow.recovered, only where subscribed
    client.patch(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}", json={"command": ["true"]},
                 headers=alice.h())
    client.post(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}/trigger", headers=alice.h())
    wait_for(lambda: len(receiver.on("/hook")) == 2, 30)
    assert json.loads(receiver.on("/hook")[1]["body"])["event"] == "workflow.recovered"
    time.sleep(1.5)
    assert len(receiver.on("/slack")) == 1 and len(mailbox.messages) == 1


def _assert_the_messages_say_it(receiver, mailbox, hook: dict, link: str) -> None:
    """Slack, Discord, the signed webhook and the email each name the workflow, the exit code 3,
    the 3 attempts and the run's deep link."""
    slack = json.loads(receiver.on("/slack")[0]["body"])
    text = json.dumps(slack)
    assert "nightly-backup" in text and "failed" in text and "*Exit code*\\n3" in text and link in text
    assert "*Attempts*\\n3" in text and any(b["type"] == "actions" for b in slack["blocks"])

    embed = json.loads(receiver.on("/discord")[0]["body"])["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert (fields["Workflow"], fields["Status"], fields["Exit code"], fields["Attempts"]) == \
        ("nightly-backup", "failed", "3", "3")
    assert embed["url"] == link

    req = receiver.on("/hook")[0]
    signed = hmac.new(hook["signingSecret"].encode(), req["headers"]["X-Workflows-Timestamp"].encode() + b"." + req["body"],
                      hashlib.sha256).hexdigest()
    assert req["headers"]["X-Workflows-Signature"] == "sha256=" + signed
    payload = json.loads(req["body"])
    assert payload["event"] == "workflow.failed"
    assert payload["run"] == {**payload["run"], "status": "failed", "exitCode": 3, "attempts": 3, "url": link}
    assert payload["workflow"]["name"] == "nightly-backup"

    mail = mailbox.messages[0]
    assert "nightly-backup" in mail["Subject"]
    assert mail["To"] == "ops@example.test, oncall@example.test"
    plain = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "Exit code: 3" in plain and "Attempts:  3" in plain and link in plain and "failed" in plain
    assert f'href="{link}"' in html


def test_429_then_200_is_retried_after_retry_after(client, alice, receiver, notifier):
    """Retry-After (4 s) is longer than the first backoff (1 s): the gap shows which one ruled."""
    channel = add_channel(client, alice, "slack", receiver.url + "/flaky")
    receiver.script["/flaky"] = [429]
    receiver.retry_after = 4
    assert client.post(f"/api/teams/{alice.team_id}/notification-channels/{channel['id']}/test",
                       headers=alice.h()).status_code == 202
    wait_for(lambda: len(receiver.on("/flaky")) == 2, 20)
    url = f"/api/teams/{alice.team_id}/notification-channels/{channel['id']}/deliveries"

    def both_recorded():  # an attempt is recorded "pending" before it is made: wait for both outcomes
        rows = client.get(url, headers=alice.h()).get_json()["deliveries"]
        return rows if len(rows) == 2 and all(d["status"] != "pending" for d in rows) else None
    rows = wait_for(both_recorded, 10)
    rows = sorted(rows, key=lambda d: d["attempt"])
    assert [(d["attempt"], d["status"], d["responseCode"]) for d in rows] == [(1, "failed", 429), (2, "sent", 200)]
    first, second = receiver.on("/flaky")
    assert 4 <= second["at"] - first["at"] <= 9, second["at"] - first["at"]


def test_a_permanent_4xx_is_not_retried(client, alice, receiver, notifier):
    channel = add_channel(client, alice, "discord", receiver.url + "/gone")
    receiver.script["/gone"] = [404, 404, 404]
    client.post(f"/api/teams/{alice.team_id}/notification-channels/{channel['id']}/test", headers=alice.h())
    url = f"/api/teams/{alice.team_id}/notification-channels/{channel['id']}/deliveries"
    rows = wait_for(lambda: [d for d in client.get(url, headers=alice.h()).get_json()["deliveries"]
                             if d["status"] == "failed"], 20)
    import time
    time.sleep(2)
    assert len(receiver.on("/gone")) == 1
    assert rows[0]["responseCode"] == 404 and "404" in rows[0]["error"]


def test_a_channel_refusing_for_good_is_disabled_then_enabled_again(client, alice, receiver, procs, smtp):
    """CHANNEL_DISABLE_AFTER permanent failures in a row disable a channel: no notification is made
    for it any more (another channel still gets every one), the dashboard says so on every page,
    and a member enables it again."""
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp[1]), "NOTIFY_SLOTS": "2", "CHANNEL_DISABLE_AFTER": "2"}
    procs.worker(2, env=env)
    procs.scheduler(env=env)
    add_channel(client, alice, "slack", receiver.url + "/good")
    bad = add_channel(client, alice, "webhook", receiver.url + "/gone")
    receiver.script["/gone"] = [410] * 10
    channel_url = f"/api/teams/{alice.team_id}/notification-channels"
    wf = create_wf(client, alice, command=["sh", "-c", "exit 4"], maxRetries=0)

    def fail_once(n: int) -> dict:
        client.post(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}/trigger", headers=alice.h())
        wait_for(lambda: len(receiver.on("/good")) == n, 60)
        return wait_for(lambda: next((c for c in client.get(channel_url, headers=alice.h()).get_json()["channels"]
                                      if c["id"] == bad["id"] and c["lastError"]
                                      and c["failuresInARow"] == min(n, 2)), None), 30)
    first = fail_once(1)
    assert first["disabledAt"] is None and "410" in first["lastError"]
    second = fail_once(2)
    assert second["disabledAt"] is not None and second["failuresInARow"] == 2
    fail_once(3)
    time.sleep(1)  # the good channel's third delivery is out; the disabled one got nothing
    assert len(receiver.on("/gone")) == 2

    client.post("/login", data={"email": alice.email, "password": alice.password})
    page = client.get(f"/teams/{alice.team_id}/notifications").get_data(as_text=True)
    assert 'data-testid="channel-disabled"' in page and "Enable again" in page and "410" in page
    other = client.get(f"/teams/{alice.team_id}/projects/{alice.project_id}/workflows").get_data(as_text=True)
    assert 'data-testid="disabled-channels-badge"' in other and "1 disabled" in other  # the notice, on every page

    enabled = client.post(f"{channel_url}/{bad['id']}/enable", headers=alice.h()).get_json()
    assert enabled["disabledAt"] is None and enabled["failuresInARow"] == 0 and "410" in enabled["lastError"]
    receiver.script["/gone"] = []  # the endpoint is fixed
    client.post(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}/trigger", headers=alice.h())
    wait_for(lambda: len(receiver.on("/gone")) == 3, 60)
    assert client.post(f"{channel_url}/{bad['id']}/enable", headers=alice.h("read")).status_code == 403


def test_channel_validation(app, client, alice, charlie):
    url = f"/api/teams/{alice.team_id}/notification-channels"
    for body, field in (({"kind": "sms", "name": "x", "target": "x"}, "kind"),
                        ({"kind": "slack", "name": "x", "target": "ftp://x"}, "target"),
                        ({"kind": "slack", "name": "x", "target": "http://hooks.example.com/x"}, "target"),
                        ({"kind": "email", "name": "x", "target": "not-an-address"}, "target"),
                        ({"kind": "slack", "name": "", "target": "https://hooks.example.com/x"}, "name"),
                        ({"kind": "slack", "name": "x", "target": "https://h.example.com", "events": ["nope"]}, "events")):
        r = client.post(url, json=body, headers=alice.h())
        assert r.status_code == 400 and field in r.get_json()["error"]["fields"], (body, r.get_json())
    ok = client.post(url, json={"kind": "slack", "name": "x", "target": "https://hooks.example.com/x"}, headers=alice.h())
    assert ok.status_code == 201 and ok.get_json()["events"] == ["workflow.failed"]  # pre-selected
    assert "hooks.example.com" in ok.get_json()["target"] and "/x" not in ok.get_json()["target"]
    assert client.get(url, headers=charlie.h()).status_code == 404
    assert client.post(url, json={"kind": "slack", "name": "x", "target": "https://h.example.com"},
                       headers=alice.h("read")).status_code == 403
    with app.app_context():
        from sqlalchemy import text

        from webapp.extensions import db
        raw = db.session.execute(text("select config from notification_channels")).scalar_one()
        assert b"hooks.example.com" not in bytes(raw)  # encrypted at rest


def test_one_teams_slow_endpoint_does_not_delay_another_teams_alert(client, alice, charlie, receiver, notifier):
    receiver.delay["/slow"] = 8
    slow = add_channel(client, alice, "slack", receiver.url + "/slow")
    fast = add_channel(client, charlie, "slack", receiver.url + "/fast")
    for _ in range(3):
        client.post(f"/api/teams/{alice.team_id}/notification-channels/{slow['id']}/test", headers=alice.h())
    wait_for(lambda: receiver.on("/slow"), 10)  # team A's endpoint is now holding a delivery
    asked = time.monotonic()
    client.post(f"/api/teams/{charlie.team_id}/notification-channels/{fast['id']}/test", headers=charlie.h())
    arrived = wait_for(lambda: receiver.on("/fast"), 15)[0]["at"]
    assert arrived - asked < 4, arrived - asked
    assert len(receiver.on("/slow")) == 1  # and team A holds one slot at a time, not all of them


def test_two_slots_claiming_one_teams_notifications_at_once_let_one_through(app, client, alice, receiver):
    """Each claim checks "none of this team's in flight" and writes in one statement, yet two such
    statements running at once each miss the other's uncommitted claim (PostgreSQL runs them side by
    side; SQLite queues writers, so there the race has no window): the database lets one through."""
    from sqlalchemy import text, update

    from jobs.notify import claim
    from webapp.extensions import db
    from webapp.models import Notification
    channel = add_channel(client, alice, "slack", receiver.url + "/slack")
    for _ in range(2):
        client.post(f"/api/teams/{alice.team_id}/notification-channels/{channel['id']}/test", headers=alice.h())
    with app.app_context():
        first, second = db.session.scalars(db.select(Notification.id).order_by(Notification.id)).all()
        engine = db.engine
    table = Notification.__table__
    with engine.connect() as slot_a:
        slot_a.execute(update(table).where(table.c.id == first).values(state="sending"))  # not committed yet
        outcome = {}

        def slot_b():
            with app.app_context():
                outcome["claimed"] = claim(second) is not None

        racer = threading.Thread(target=slot_b)
        racer.start()

        def b_done_or_waiting_on_a():
            if not racer.is_alive() or engine.dialect.name != "postgresql":
                return True
            with engine.connect() as probe:
                return probe.execute(text("select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid "
                                          "where not l.granted and a.datname = current_database()")).scalar()
        wait_for(b_done_or_waiting_on_a, 10)
        slot_a.commit()
    racer.join(30)
    assert outcome == {"claimed": False}
    with app.app_context():
        states = dict(db.session.execute(db.select(Notification.id, Notification.state)).all())
    assert states == {first: "sending", second: "pending"}


def test_an_attempt_that_outlasts_its_deadline_is_given_up_and_retried(client, alice, receiver, procs, smtp):
    """A receiver that answers a byte a second never trips a per-read timeout; the attempt's total
    deadline (NOTIFY_DEADLINE_SEC) ends it, well before the sweep would take the notification back
    and send it a second time meanwhile."""
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp[1]), "NOTIFY_DEADLINE_SEC": "3"}
    procs.worker(1, env=env)
    procs.scheduler(env=env)
    channel = add_channel(client, alice, "webhook", receiver.url + "/slow")
    receiver.drip["/slow"] = 1
    client.post(f"/api/teams/{alice.team_id}/notification-channels/{channel['id']}/test", headers=alice.h())
    url = f"/api/teams/{alice.team_id}/notification-channels/{channel['id']}/deliveries"

    def settled():
        rows = client.get(url, headers=alice.h()).get_json()["deliveries"]
        return rows if any(d["status"] == "sent" for d in rows) and all(d["status"] != "pending" for d in rows) else None
    rows = sorted(wait_for(settled, 30), key=lambda d: d["attempt"])
    assert [(d["attempt"], d["status"]) for d in rows] == [(1, "failed"), (2, "sent")]
    assert rows[0]["error"] == "no answer within 3 s (NOTIFY_DEADLINE_SEC); given up"
    assert len(receiver.on("/slow")) == 2


def test_an_attempt_taken_back_by_the_sweep_does_not_overwrite_the_next_attempts_outcome(app, client, alice,
                                                                                         receiver):
    from sqlalchemy import update

    from jobs.notify import claim, settle
    from webapp.extensions import db
    from webapp.models import Notification
    channel = add_channel(client, alice, "slack", receiver.url + "/slack")
    client.post(f"/api/teams/{alice.team_id}/notification-channels/{channel['id']}/test", headers=alice.h())
    with app.app_context():
        n = db.session.scalar(db.select(Notification.id))
        assert claim(n).attempts == 1  # attempt 1 starts, then runs past the sweep's patience:
        db.session.execute(update(Notification).where(Notification.id == n).values(state="pending", claimed_at=None))
        db.session.commit()
        assert claim(n).attempts == 2  # taken back and claimed again: attempt 2 is in flight
        assert settle(n, 1, "failed", None) is False  # attempt 1's late outcome changes nothing
        assert db.session.get(Notification, n).state == "sending"
        assert settle(n, 2, "sent", None) is True
        db.session.expire_all()
        assert db.session.get(Notification, n).state == "sent"
