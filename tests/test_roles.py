"""Who may do what (services/roles.py): every route of the app names its action, and each is
called by each role over HTTP: the role below the action's answers 403, the action's own role
does not, an outsider gets 404. API routes are called with keys of each role, pages with members'
sessions of each role."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from conftest import create_wf
from runs_api import post_trigger
from webapp.extensions import db
from webapp.gate import OPEN
from webapp.models import ApiKey, Membership, User
from webapp.services import roles
from webapp.services.access import Principal
from webapp.services.errors import Forbidden
from webapp.services.keys import create_key
from webapp.vocabulary import ROLES, Role

PASSWORD = "password-of-a-role"
FILLERS = {"project_id": "999999", "workflow_id": "wf_nosuch", "run_id": "run_nosuch", "backfill_id": "bf_nosuch",
           "name": "nosuch", "channel_id": "999999", "cred_id": "999999", "key_id": "999999", "user_id": "999999",
           "invitation_id": "999999", "host": "nosuch", "token": "nosuch", "filename": "app.css"}


@pytest.fixture
def crew(app, alice):
    """alice owns team-a; a viewer, a member and an admin join it; a key of each role."""
    with app.app_context():
        for role in (Role.VIEWER, Role.MEMBER, Role.ADMIN):
            user = User(email=f"{role}@example.test")
            user.set_password(PASSWORD)
            db.session.add(user)
            db.session.add(Membership(user=user, team_id=alice.team_id, role=role))
        db.session.commit()
        operator = Principal.operator({alice.team_id})
        keys = {role: create_key(operator, alice.team_id, role, "live")[1] for role in ROLES}
        db.session.remove()
    return keys


def _session(app, member_email: str, password: str):
    client = app.test_client()
    r = client.post("/login", data={"email": member_email, "password": password})
    assert r.status_code == 302, r.status_code
    return client


def _clients(app, alice, crew):
    api = {role: (app.test_client(), {"Authorization": f"Bearer {crew[role]}"}) for role in ROLES}
    pages = {role: (_session(app, f"{role}@example.test", PASSWORD), {}) for role in ROLES if role != Role.OWNER}
    pages[Role.OWNER] = (_session(app, alice.email, alice.password), {})
    return api, pages


def _path(rule: str, values: dict) -> str:
    return re.sub(r"<(?:[\w]+:)?(\w+)>", lambda m: values[m.group(1)], rule)


def test_every_route_names_an_action_of_the_role_table(app):
    unnamed = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        actions = getattr(app.view_functions[rule.endpoint], "actions", None)
        if not actions:
            unnamed.append(f"{rule.rule} ({rule.endpoint})")
            continue
        for action in actions.values():
            assert action == OPEN or action in roles.RULES, (rule.rule, action)
    assert not unnamed, f"routes with no rule (add @needs(...) and a line in services/roles.py): {unnamed}"


def _walk(app, alice):
    """(method, path, action, api) of every route with a team in its path."""
    for rule in app.url_map.iter_rules():
        actions = getattr(app.view_functions[rule.endpoint], "actions", None)
        if not actions or "team_id" not in rule.arguments:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            action = actions["POST" if method == "POST" else "GET"]
            if action != OPEN:
                yield method, _path(rule.rule, {**FILLERS, "team_id": str(alice.team_id)}), action, \
                    rule.rule.startswith("/api/")


def test_each_route_refuses_the_role_below_its_action_and_serves_its_own(app, alice, charlie, crew):
    api, pages = _clients(app, alice, crew)
    outsider = {"Authorization": f"Bearer {charlie.full}"}
    walked = 0
    for method, path, action, is_api in _walk(app, alice):
        least = roles.RULES[action]
        clients = api if is_api else pages
        client, headers = clients[least]
        r = client.open(path, method=method, headers=headers, json={} if method != "GET" else None)
        assert r.status_code != 403 and r.status_code != 401, (method, path, action, least, r.status_code)
        rank = roles.RANK[least]
        if rank > 0:
            client, headers = clients[ROLES[rank - 1]]
            r = client.open(path, method=method, headers=headers, json={} if method != "GET" else None)
            assert r.status_code == 403, (method, path, action, ROLES[rank - 1], r.status_code)
            if is_api:
                assert action in r.get_json()["error"]["message"]
        if is_api and not path.endswith("/logs/stream"):  # a websocket's handshake is checked first (test_live)
            r = app.test_client().open(path, method=method, headers=outsider)
            assert r.status_code == 404, (method, path, r.status_code)
        walked += 1
    assert walked > 85


def test_run_pages_without_a_team_in_their_path_check_the_role_too(app, client, alice, crew):
    api, pages = _clients(app, alice, crew)
    wf = create_wf(client, alice)
    run_id = post_trigger(client, alice, wf["id"]).get_json()["id"]  # no worker: it stays queued
    viewer, _ = pages[Role.VIEWER]
    assert viewer.get(f"/runs/{run_id}").status_code == 200
    assert viewer.post(f"/runs/{run_id}/cancel").status_code == 403
    assert viewer.post(f"/runs/{run_id}/retry").status_code == 403
    member, _ = pages[Role.MEMBER]
    assert member.post(f"/runs/{run_id}/cancel").status_code == 302
    assert member.post(f"/runs/{run_id}/retry").status_code == 302  # refused with a message, not a 403


def test_the_services_check_the_role_whoever_calls_them(app, client, alice, crew):
    """The same table holds below the routes: a viewer's principal calling a service is refused."""
    from webapp.schemas import WorkflowUpdate
    from webapp.services import channels, runs, workflows
    wf = create_wf(client, alice)
    viewer = Principal(roles={alice.team_id: Role.VIEWER})
    member = Principal(roles={alice.team_id: Role.MEMBER})
    with app.app_context():
        with pytest.raises(Forbidden, match="workflow.update needs the admin role"):
            workflows.update_workflow(member, alice.team_id, wf["id"], WorkflowUpdate(name="x"))
        with pytest.raises(Forbidden, match="run.trigger needs the member role"):
            runs.trigger_workflow(viewer, alice.team_id, wf["id"], {})
        with pytest.raises(Forbidden, match="channel.create"):
            channels.create_channel(member, alice.team_id, "email", "ops", "ops@example.test")
        db.session.remove()


def test_keys_act_by_their_role(client, alice, crew):
    url = f"/api/projects/{alice.team_id}/{alice.project_id}/workflows"
    body = {"projectId": alice.project_id, "name": "j", "image": "busybox:latest", "command": ["true"]}
    h = {role: {"Authorization": f"Bearer {crew[role]}"} for role in ROLES}
    assert client.post(url, json=body, headers=h[Role.MEMBER]).status_code == 403
    wf = client.post(url, json=body, headers=h[Role.ADMIN]).get_json()
    trigger = f"/api/workflows/{alice.team_id}/workflows/{wf['id']}/trigger"
    assert client.post(trigger, headers=h[Role.VIEWER]).status_code == 403
    assert client.post(trigger, headers=h[Role.MEMBER]).status_code == 202
    # the contract's read key is a viewer: env values that look secret stay masked for it
    client.patch(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}", json={"env": {"API_TOKEN": "s3cret"}},
                 headers=h[Role.ADMIN])
    get = f"/api/workflows/{alice.team_id}/workflows/{wf['id']}"
    assert client.get(get, headers=alice.h("read")).get_json()["env"]["API_TOKEN"] != "s3cret"
    assert client.get(get, headers=h[Role.MEMBER]).get_json()["env"]["API_TOKEN"] == "s3cret"


def test_a_key_is_at_most_its_makers_role(app, alice, crew):
    api, pages = _clients(app, alice, crew)
    admin, _ = pages[Role.ADMIN]
    r = admin.post(f"/teams/{alice.team_id}/api-keys", data={"name": "x", "role": "owner", "mode": "live"})
    assert r.status_code == 400 and b"at most admin" in r.data
    r = admin.post(f"/teams/{alice.team_id}/api-keys", data={"name": "x", "role": "member", "mode": "live"})
    assert r.status_code == 302
    page = admin.get(f"/teams/{alice.team_id}/api-keys").get_data(as_text=True)
    assert 'value="owner"' not in page and 'value="admin"' in page
    with app.app_context():
        key = db.session.query(ApiKey).filter_by(name="x").one()
        assert key.role == Role.MEMBER and key.created_by_id is not None


def test_the_last_owner_stays_and_a_members_keys_follow_them(app, client, alice, crew):
    owner, _ = _clients(app, alice, crew)[1][Role.OWNER]
    with app.app_context():
        admin_id = db.session.query(User.id).filter_by(email="admin@example.test").scalar()
    admin = _session(app, "admin@example.test", PASSWORD)
    assert admin.post(f"/teams/{alice.team_id}/api-keys", data={"name": "mine", "role": "admin"}).status_code == 302
    members = f"/api/teams/{alice.team_id}/members"
    own = {"X-CSRFToken": ""}
    r = owner.patch(f"{members}/{alice.user_id}", json={"role": "admin"}, headers=own)
    assert r.status_code == 409 and "last owner" in r.get_json()["error"]["message"]
    assert owner.delete(f"{members}/{alice.user_id}", headers=own).status_code == 409
    assert owner.post(f"/api/teams/{alice.team_id}/leave", headers=own).status_code == 409
    r = owner.patch(f"{members}/{admin_id}", json={"role": "viewer"}, headers=own)
    assert r.status_code == 200 and r.get_json()["role"] == "viewer"
    with app.app_context():
        assert db.session.query(ApiKey.role).filter_by(name="mine").scalar() == "viewer"
    r = owner.patch(f"{members}/{admin_id}", json={"role": "boss"}, headers=own)
    assert r.status_code == 400 and "role" in r.get_json()["error"]["fields"]
    assert owner.delete(f"{members}/{admin_id}", headers=own).status_code == 204
    with app.app_context():
        assert db.session.query(ApiKey.revoked_at).filter_by(name="mine").scalar() is not None
    listed = {m["email"]: m["role"] for m in owner.get(members).get_json()["members"]}
    assert listed == {alice.email: "owner", "member@example.test": "member", "viewer@example.test": "viewer"}


def test_pages_offer_only_the_buttons_the_role_allows(app, client, alice, crew):
    _, pages = _clients(app, alice, crew)
    wf = create_wf(client, alice)
    url = f"/teams/{alice.team_id}/workflows/{wf['id']}"
    seen = {role: pages[role][0].get(url).get_data(as_text=True) for role in (Role.VIEWER, Role.MEMBER, Role.ADMIN)}
    assert "Run now" not in seen[Role.VIEWER] and ">Edit<" not in seen[Role.VIEWER]
    assert "Run now" in seen[Role.MEMBER] and ">Edit<" not in seen[Role.MEMBER]
    assert "Run now" in seen[Role.ADMIN] and ">Edit<" in seen[Role.ADMIN] and ">Delete<" in seen[Role.ADMIN]
    nav = pages[Role.MEMBER][0].get(f"/teams/{alice.team_id}/projects/{alice.project_id}/workflows").get_data(as_text=True)
    assert "New workflow" not in nav and ">API keys<" not in nav and ">Audit<" not in nav and ">Members<" in nav


def test_keys_are_made_listed_and_revoked_over_the_api_up_to_the_makers_role(client, alice, crew):
    url = f"/api/teams/{alice.team_id}/api-keys"
    admin = {"Authorization": f"Bearer {crew[Role.ADMIN]}"}
    assert client.get(url, headers={"Authorization": f"Bearer {crew[Role.MEMBER]}"}).status_code == 403
    r = client.post(url, json={"name": "deploys", "role": "owner"}, headers=admin)
    assert r.status_code == 403 and r.get_json()["error"]["fields"] == {"role": "at most admin"}
    r = client.post(url, json={"name": "deploys", "expiresAt": "2020-01-01T00:00:00Z"}, headers=admin)
    assert r.status_code == 400 and "expiresAt" in r.get_json()["error"]["fields"]
    year = (datetime.now(timezone.utc) + timedelta(days=365)).replace(microsecond=0)
    r = client.post(url, json={"name": "deploys", "role": "member", "expiresAt": year.isoformat()}, headers=admin)
    assert r.status_code == 201, r.get_json()
    made = r.get_json()
    assert made["key"].startswith("hs_live_") and made["role"] == "member" and made["expiresAt"].startswith(year.strftime("%Y-%m-%dT%H:%M"))
    listed = client.get(url, headers=admin).get_json()["apiKeys"]
    assert made["key"] not in str(listed) and any(k["prefix"] == made["prefix"] for k in listed)
    mine = {"Authorization": f"Bearer {made['key']}"}
    assert client.get(f"/api/teams/{alice.team_id}/projects", headers=mine).status_code == 200
    assert client.delete(f"{url}/{made['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/teams/{alice.team_id}/projects", headers=mine).status_code == 401


def test_an_owner_changes_roles_and_removes_members_from_the_members_page(app, alice, crew):
    _, pages = _clients(app, alice, crew)
    owner, admin = pages[Role.OWNER][0], pages[Role.ADMIN][0]
    with app.app_context():
        ids = dict(db.session.query(User.email, User.id))
    page = f"/teams/{alice.team_id}/members"
    assert "Send the invitation" not in admin.get(page).get_data(as_text=True)
    assert admin.post(f"{page}/{ids['viewer@example.test']}/role", data={"role": "admin"}).status_code == 403
    r = owner.post(f"{page}/{ids['viewer@example.test']}/role", data={"role": "member"}, follow_redirects=True)
    assert "viewer@example.test is member now" in r.get_data(as_text=True)
    r = owner.post(f"{page}/{alice.user_id}/role", data={"role": "viewer"}, follow_redirects=True)
    assert "last owner" in r.get_data(as_text=True)
    r = owner.post(f"{page}/{ids['admin@example.test']}/remove", follow_redirects=True)
    assert "Removed the member" in r.get_data(as_text=True)
    listed = owner.get(page).get_data(as_text=True)
    assert 'data-email="admin@example.test"' not in listed and 'data-email="viewer@example.test"' in listed
    assert admin.get(page).status_code == 404  # no longer in the team
