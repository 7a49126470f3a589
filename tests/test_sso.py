"""Single sign-on against a real OpenID Connect provider: the npm package `oidc-provider` run under
node (tests/oidc/provider.mjs), with its own users, a groups claim and its own login and consent
pages. Chromium signs in through those pages; the other tests walk the same redirects with
requests. A wrong audience, nonce, issuer or an expired ID token (re-signed by the provider's own
key), an unverified email and a disallowed domain are each refused with a page that says why."""
from __future__ import annotations

import json
import os
import re
import subprocess
from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest
import requests
from playwright.sync_api import expect

from conftest import ROOT, create_app, free_port, serving, wait_for
from webapp.extensions import db
from webapp.models import AuditEntry, Membership, User

OIDC_DIR = ROOT / "tests" / "oidc"
USERS = {
    "ada": {"email": "ada@example.test", "email_verified": True, "name": "Ada", "groups": ["ops", "eng"]},
    "alice": {"email": "alice@example.test", "email_verified": True, "groups": []},
    "eve": {"email": "eve@example.test", "email_verified": False, "groups": ["ops"]},
    "mallory": {"email": "mallory@other.test", "email_verified": True, "groups": ["ops"]},
}


@pytest.fixture(scope="module")
def idp():
    """The provider on one free port and the dashboard (CSRF on, as in production) on another,
    each knowing the other's address; yields (dashboard URL, its app, the provider's URL)."""
    idp_port, web_port = free_port(), free_port()
    issuer, web = f"http://127.0.0.1:{idp_port}", f"http://127.0.0.1:{web_port}"
    env = dict(os.environ, PORT=str(idp_port), CLIENT_ID="workflows", CLIENT_SECRET="a-client-secret-for-tests",
               REDIRECT_URIS=f"{web}/login/sso/callback", OIDC_TEST_USERS=json.dumps(USERS))
    node = subprocess.Popen(["node", "provider.mjs"], cwd=OIDC_DIR, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def discovered():
        try:
            return requests.get(f"{issuer}/.well-known/openid-configuration", timeout=2).status_code == 200
        except requests.RequestException:
            return False
    try:
        wait_for(discovered, 60)
        site = create_app({"TESTING": True, "BASE_URL": web, "OIDC_ISSUER": issuer, "OIDC_CLIENT_ID": "workflows",
                           "OIDC_CLIENT_SECRET": "a-client-secret-for-tests", "OIDC_PROVIDER_NAME": "Test IdP",
                           "OIDC_ALLOWED_DOMAINS": frozenset({"example.test"})})
        with serving(site, web_port):
            yield web, site, issuer
    finally:
        node.terminate()
        node.wait(10)


@pytest.fixture(autouse=True)
def _honest_provider(idp):
    yield
    requests.post(f"{idp[2]}/__test/tamper?mode=none", timeout=5)


class _Form(HTMLParser):
    """The first form of a page: its action and its fields."""

    def __init__(self):
        super().__init__()
        self.action, self.fields = None, {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action")
        elif tag == "input" and a.get("name") and self.action is not None:
            self.fields[a["name"]] = a.get("value", "")


def _submit(s: requests.Session, page: requests.Response, **values) -> requests.Response:
    form = _Form()
    form.feed(page.text)
    return s.post(urljoin(page.url, form.action), data={**form.fields, **values}, timeout=10)


def sso_sign_in(web: str, login: str) -> tuple[requests.Session, requests.Response]:
    """The browser's walk with requests: our button, the provider's login and consent forms,
    back to our callback; returns the session and the last page."""
    s = requests.Session()
    page = s.get(f"{web}/login/sso", timeout=10)
    assert "Sign-in" in page.text, page.text[:300]
    page = _submit(s, page, login=login, password="any-password")
    if "Authorize" in page.text:
        page = _submit(s, page)
    return s, page


def _audit(site, action):
    with site.app_context():
        rows = [(r.actor, r.diff) for r in db.session.query(AuditEntry).filter_by(action=action).order_by(AuditEntry.id)]
        db.session.remove()
        return rows


def test_the_first_sign_in_makes_the_user_and_the_group_map_makes_the_membership(idp, alice):
    web, site, _ = idp
    cli = site.test_cli_runner()
    assert cli.invoke(args=["sso", "map", "ops", "--team", str(alice.team_id), "--role", "member"]).exit_code == 0
    s, page = sso_sign_in(web, "ada")
    assert page.url.startswith(web) and "Workflows" in page.text and "Sign in" not in page.text[:2000]
    with site.app_context():
        ada = db.session.query(User).filter_by(email="ada@example.test").one()
        assert ada.sso_subject.endswith(" ada")
        assert [(m.team_id, m.role, m.via_sso) for m in ada.memberships] == [(alice.team_id, "member", True)]
        db.session.remove()
    assert s.get(f"{web}/teams/{alice.team_id}/members", timeout=10).status_code == 200
    [(actor, diff)] = _audit(site, "sso.login")
    assert actor == "ada@example.test" and diff["groups"] == ["eng", "ops"]

    # the map changes: the role follows at the next sign-in; unmapped, the membership goes
    cli.invoke(args=["sso", "map", "eng", "--team", str(alice.team_id), "--role", "admin"])
    sso_sign_in(web, "ada")
    with site.app_context():
        assert db.session.query(Membership.role).filter_by(team_id=alice.team_id).join(User).filter(
            User.email == "ada@example.test").scalar() == "admin"
        db.session.remove()
    cli.invoke(args=["sso", "unmap", "eng", "--team", str(alice.team_id)])
    cli.invoke(args=["sso", "unmap", "ops", "--team", str(alice.team_id)])
    s, _ = sso_sign_in(web, "ada")
    assert s.get(f"{web}/teams/{alice.team_id}/members", timeout=10).status_code == 404


def test_an_account_with_the_verified_email_is_linked_not_doubled(idp, alice):
    web, site, _ = idp
    s, page = sso_sign_in(web, "alice")
    assert s.get(f"{web}/teams/{alice.team_id}/members", timeout=10).status_code == 200  # her own team, as owner
    with site.app_context():
        assert db.session.query(User).filter_by(email=alice.email).one().id == alice.user_id
        db.session.remove()


@pytest.mark.parametrize("mode, words", [
    ("aud", "it was issued to another client"), ("nonce", "it does not answer this sign-in"),
    ("exp", "it has expired"), ("iss", "it comes from another issuer")])
def test_an_id_token_that_fails_a_check_is_refused_with_a_page_that_says_which(idp, mode, words):
    web, site, issuer = idp
    requests.post(f"{issuer}/__test/tamper?mode={mode}", timeout=5)
    s, page = sso_sign_in(web, "ada")
    assert page.status_code == 403 and words in page.text, re.findall(r"sso-error\">([^<]*)", page.text)
    assert s.get(f"{web}/workers", timeout=10, allow_redirects=False).status_code == 302  # not signed in
    assert any(words in d["reason"] for _, d in _audit(site, "login.failed"))


@pytest.mark.parametrize("login, words", [
    ("eve", "has not verified eve@example.test"),
    ("mallory", "mallory@other.test is not of a domain allowed to sign in here (example.test)")])
def test_an_unverified_email_or_another_domain_is_refused(idp, login, words):
    web, site, _ = idp
    _, page = sso_sign_in(web, login)
    assert page.status_code == 403 and words in page.text
    with site.app_context():
        assert db.session.query(User).filter_by(email=USERS[login]["email"]).first() is None
        db.session.remove()


def test_with_password_login_off_only_sso_signs_in(idp, alice, monkeypatch):
    web, site, _ = idp
    monkeypatch.setitem(site.config, "PASSWORD_LOGIN", False)
    page = requests.get(f"{web}/login", timeout=10).text
    assert "Sign in with Test IdP" in page and 'type="password"' not in page
    s = requests.Session()
    s.get(f"{web}/login", timeout=10)
    r = s.post(f"{web}/login", data={"email": alice.email, "password": alice.password,
                                     "csrf_token": _csrf(s.get(f"{web}/login", timeout=10).text)}, timeout=10)
    assert r.status_code == 401 and "turned off" in r.text
    s, page = sso_sign_in(web, "alice")
    assert s.get(f"{web}/teams/{alice.team_id}/members", timeout=10).status_code == 200


def _csrf(page: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def test_in_chromium_a_member_signs_in_through_the_providers_own_pages(idp, alice, page):
    web, site, _ = idp
    site.test_cli_runner().invoke(args=["sso", "map", "ops", "--team", str(alice.team_id), "--role", "viewer"])
    page.goto(f"{web}/login")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.locator("input[name=login]").fill("ada")
    page.locator("input[name=password]").fill("ada's password")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()  # the provider's consent page
    expect(page).to_have_url(re.compile(re.escape(web)))
    page.goto(f"{web}/teams/{alice.team_id}/members")
    expect(page.locator("#member-list tr[data-email='ada@example.test']")).to_contain_text("viewer")
    expect(page.locator("#invite-form")).to_have_count(0)
