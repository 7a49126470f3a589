"""Invitations by email through a real SMTP server (aiosmtpd): an owner invites an address with a
role, the mailed link works once for 7 days and makes the membership; a user may be in several
teams with different roles."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from browsing import login
from conftest import create_app, free_port, serving
from webapp.extensions import db
from webapp.models import Invitation, Membership
from webapp.models.base import utcnow

LINK = re.compile(r"https?://\S+/invitations/(inv_[A-Za-z0-9_-]+)")


@pytest.fixture
def mailed(app, smtp, monkeypatch):
    box, port = smtp
    monkeypatch.setitem(app.config, "SMTP_PORT", port)
    monkeypatch.setitem(app.config, "SMTP_HOST", "127.0.0.1")
    return box


def _invite(client, alice, email, role="member", key="full"):
    return client.post(f"/api/teams/{alice.team_id}/invitations", json={"email": email, "role": role},
                       headers=alice.h(key))


def _token(box, email) -> str:
    [mail] = [m for m in box.messages if m["To"] == email]
    return LINK.search(mail.get_body(("plain",)).get_content()).group(1)


def test_an_owner_invites_and_the_mailed_link_makes_the_account_and_membership_once(app, client, alice, mailed):
    session = app.test_client()
    session.post("/login", data={"email": alice.email, "password": alice.password})
    assert _invite(client, alice, "sam@example.test", key="full").status_code == 403  # an admin key: owners invite
    r = session.post(f"/api/teams/{alice.team_id}/invitations", json={"email": "Sam@Example.test", "role": "viewer"})
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["email"] == "sam@example.test" and body["mailError"] is None
    token = _token(mailed, "sam@example.test")
    assert body["link"].endswith(token)
    assert "alice@example.test invites you to the team team-a" in mailed.messages[0].get_body(("plain",)).get_content()
    listed = session.get(f"/api/teams/{alice.team_id}/invitations").get_json()["invitations"]
    assert [(i["email"], i["role"]) for i in listed] == [("sam@example.test", "viewer")]

    sam = app.test_client()
    page = sam.get(f"/invitations/{token}")
    assert page.status_code == 200 and b"Choose a password" in page.data
    assert sam.post(f"/invitations/{token}", data={"password": "short"}).status_code == 400
    assert sam.post(f"/invitations/{token}", data={"password": "a-good-password"}).status_code == 302
    assert sam.get(f"/teams/{alice.team_id}/members").status_code == 200  # signed in, a viewer of team-a
    assert sam.post("/runs/run_x/cancel").status_code == 404
    again = app.test_client().get(f"/invitations/{token}")
    assert again.status_code == 410 and b"accepted already" in again.data
    members = {m["email"]: m["role"] for m in
               session.get(f"/api/teams/{alice.team_id}/members").get_json()["members"]}
    assert members["sam@example.test"] == "viewer"


def test_an_existing_user_joins_a_second_team_with_another_role(app, client, alice, charlie, mailed):
    owner = app.test_client()
    owner.post("/login", data={"email": alice.email, "password": alice.password})
    owner.post(f"/api/teams/{alice.team_id}/invitations", json={"email": charlie.email, "role": "admin"})
    token = _token(mailed, charlie.email)
    anon = app.test_client().get(f"/invitations/{token}")
    assert b"Sign in as charlie@example.test" in anon.data
    assert app.test_client().post(f"/invitations/{token}", data={"password": "whatever-pass"}).status_code == 400
    wrong = owner.post(f"/invitations/{token}")  # signed in as alice, not as charlie
    assert wrong.status_code == 400 and b"you are signed in as alice@example.test" in wrong.data
    c = app.test_client()
    c.post("/login", data={"email": charlie.email, "password": charlie.password})
    assert c.post(f"/invitations/{token}").status_code == 302
    with app.app_context():
        roles = dict(db.session.query(Membership.team_id, Membership.role).filter_by(user_id=charlie.user_id))
        db.session.remove()
    assert roles == {charlie.team_id: "owner", alice.team_id: "admin"}
    assert owner.post(f"/api/teams/{alice.team_id}/invitations",
                      json={"email": charlie.email}).status_code == 409  # a member already


def test_expired_revoked_and_bad_invitations_are_refused_clearly(app, alice, mailed, smtp):
    owner = app.test_client()
    owner.post("/login", data={"email": alice.email, "password": alice.password})
    bad = owner.post(f"/api/teams/{alice.team_id}/invitations", json={"email": "not-an-address"})
    assert bad.status_code == 400 and "email" in bad.get_json()["error"]["fields"]
    bad = owner.post(f"/api/teams/{alice.team_id}/invitations", json={"email": "a@example.test", "role": "god"})
    assert bad.status_code == 400 and "role" in bad.get_json()["error"]["fields"]
    for email in ("late@example.test", "gone@example.test"):
        assert owner.post(f"/api/teams/{alice.team_id}/invitations", json={"email": email}).status_code == 201
    with app.app_context():
        late = db.session.query(Invitation).filter_by(email="late@example.test").one()
        late.expires_at = utcnow() - timedelta(seconds=1)
        gone_id = db.session.query(Invitation.id).filter_by(email="gone@example.test").scalar()
        db.session.commit()
    assert owner.delete(f"/api/teams/{alice.team_id}/invitations/{gone_id}").status_code == 204
    r = app.test_client().get(f"/invitations/{_token(mailed, 'late@example.test')}")
    assert r.status_code == 410 and b"expired" in r.data
    r = app.test_client().post(f"/invitations/{_token(mailed, 'gone@example.test')}", data={"password": "12345678x"})
    assert r.status_code == 410 and b"revoked" in r.data
    assert app.test_client().get("/invitations/inv_nosuch").status_code == 404


def test_with_the_mail_server_away_the_owner_gets_the_link_to_give(app, alice, monkeypatch):
    monkeypatch.setitem(app.config, "SMTP_PORT", free_port())  # nothing listens there
    owner = app.test_client()
    owner.post("/login", data={"email": alice.email, "password": alice.password})
    r = owner.post(f"/api/teams/{alice.team_id}/invitations", json={"email": "sam@example.test"})
    assert r.status_code == 201 and "SMTP" in r.get_json()["mailError"] and "/invitations/inv_" in r.get_json()["link"]


@pytest.fixture
def mail_site(smtp):
    """The dashboard with CSRF on, mailing invitations to the aiosmtpd mailbox."""
    box, port = smtp
    site = create_app({"TESTING": True, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": port})
    with serving(site) as web_port:
        site.config["BASE_URL"] = f"http://127.0.0.1:{web_port}"
        yield site.config["BASE_URL"], box


def test_in_chromium_an_owner_invites_and_the_invited_person_joins_from_the_mail(alice, page, mail_site):
    url, box = mail_site
    login(page, url, alice)
    page.goto(f"{url}/teams/{alice.team_id}/members")
    page.get_by_label("Email").fill("dana@example.test")
    page.locator("#invite-form select[name=role]").select_option("member")
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.locator("#invitation-sent")).to_contain_text("Invited dana@example.test")
    expect(page.locator("#invitation-list")).to_contain_text("dana@example.test")
    page.get_by_role("button", name="Sign out").click()
    link = LINK.search(box.messages[-1].get_body(("plain",)).get_content()).group(0)
    page.goto(link)
    expect(page.locator("#invitation")).to_contain_text("invites dana@example.test to the team as member")
    page.get_by_label("Choose a password").fill("dana-password-1")
    page.get_by_role("button", name="Make my account and join").click()
    expect(page.locator("body")).to_contain_text("You joined team-a as member")
    page.goto(f"{url}/teams/{alice.team_id}/members")
    expect(page.locator("#member-list tr[data-email='dana@example.test']")).to_contain_text("member")
    expect(page.locator("#invite-form")).to_have_count(0)  # a member does not invite
