"""Workflow routes: the contract's statuses, limits at their boundaries, tenancy and key rules."""
from __future__ import annotations

import json

import pytest

from conftest import TEST_IMAGE, create_wf, grant_pool, wf_body


def url_list(m):
    return f"/api/projects/{m.team_id}/{m.project_id}/workflows"


def url_one(m, wf_id):
    return f"/api/workflows/{m.team_id}/workflows/{wf_id}"


def post(client, m, body, key="full"):
    return client.post(url_list(m), json=body, headers=m.h(key))


def test_create_returns_the_workflow(client, alice):
    r = post(client, alice, wf_body(alice, name="prod-monitor", schedule="*/5 * * * *", maxRetries=3,
                                     env={"A": "1"}))
    assert r.status_code == 201
    wf = r.get_json()
    assert wf["id"].startswith("wf_")
    for field in ("id", "teamId", "projectId", "environmentId", "name", "image", "command", "env",
                  "schedule", "timeoutSec", "maxRetries", "nextRunAt", "createdAt", "updatedAt",
                  "timezone", "concurrencyPolicy", "retryBackoffSec", "memoryMb", "cpus"):
        assert field in wf, field
    assert wf["environmentId"] == alice.environment_id
    assert wf["nextRunAt"].endswith("Z") and wf["env"] == {"A": "1"}
    assert r.headers["Content-Type"] == "application/json"


def test_defaults(client, alice):
    wf = post(client, alice, {"projectId": alice.project_id, "name": "n", "image": "busybox"}).get_json()
    assert (wf["command"], wf["env"], wf["schedule"], wf["timeoutSec"], wf["maxRetries"], wf["nextRunAt"]) == \
        (None, {}, None, 3600, 0, None)
    assert (wf["timezone"], wf["concurrencyPolicy"], wf["retryBackoffSec"]) == ("UTC", "allow", 5)


def test_list_get_patch_delete(client, alice):
    wf = create_wf(client, alice)
    assert [w["id"] for w in client.get(url_list(alice), headers=alice.h()).get_json()["workflows"]] == [wf["id"]]
    assert client.get(url_one(alice, wf["id"]), headers=alice.h()).get_json() == wf
    r = client.patch(url_one(alice, wf["id"]), json={"name": "renamed", "schedule": "0 * * * *"}, headers=alice.h())
    assert r.status_code == 200
    patched = r.get_json()
    assert patched["name"] == "renamed" and patched["schedule"] == "0 * * * *" and patched["nextRunAt"]
    assert patched["image"] == wf["image"]
    r = client.patch(url_one(alice, wf["id"]), json={"schedule": None}, headers=alice.h())
    assert r.get_json()["nextRunAt"] is None
    assert client.delete(url_one(alice, wf["id"]), headers=alice.h()).status_code == 204
    assert client.get(url_one(alice, wf["id"]), headers=alice.h()).status_code == 404
    assert client.get(url_list(alice), headers=alice.h()).get_json()["workflows"] == []
    assert client.delete(url_one(alice, wf["id"]), headers=alice.h()).status_code == 404


BOUNDARIES = [
    ("name", "x" * 100, "x" * 101),
    ("name", "x", ""),
    ("command", ["a"] * 64, ["a"] * 65),
    ("command", ["a" * 1024], ["a" * 1025]),
    ("env", {"K": "v" * 4096}, {"K": "v" * 4097}),
    ("env", {"_OK_1": "v"}, {"1BAD": "v"}),
    ("env", {"A_B": "v"}, {"A-B": "v"}),
    ("timeoutSec", 1, 0),
    ("timeoutSec", 86400, 86401),
    ("maxRetries", 0, -1),
    ("maxRetries", 10, 11),
    ("schedule", "*/5 * * * *", "*/5 * * *"),
    ("schedule", "*/2 * * * * *", "* * * * * * *"),
    ("schedule", "0 9 * * 1-5", "61 * * * *"),
    ("image", "ghcr.io/org/app:1.2@sha256:" + "a" * 64, "Not An Image"),
    ("image", "127.0.0.1:5001/team/img:v1", "img:"),
    ("timezone", "Europe/Paris", "Mars/Olympus"),
    ("concurrencyPolicy", "forbid", "sometimes"),
    ("retryBackoffSec", 3600, 3601),
    ("memoryMb", 6, 5),
    ("cpus", 0.5, 0),
    ("workerPool", "gpu-" + "a" * 36, "a" * 41),
    ("workerPool", "gpu_1", "GPU"),
    ("workerPool", "gpu", "gpu\n"),
]


@pytest.mark.parametrize("field,ok,bad", BOUNDARIES)
def test_limits_at_the_boundary(app, client, alice, field, ok, bad):
    if field == "workerPool":
        grant_pool(app, alice, ok)  # pools other than default are set aside for teams
    assert post(client, alice, wf_body(alice, **{field: ok})).status_code == 201
    r = post(client, alice, wf_body(alice, **{field: bad}))
    assert r.status_code == 400
    err = r.get_json()["error"]
    assert err["code"] == "validation_error" and field in err["fields"], err


@pytest.mark.parametrize("field,ok,bad", BOUNDARIES)
def test_patch_applies_the_same_limits(app, client, alice, field, ok, bad):
    if field == "workerPool":
        grant_pool(app, alice, ok)
    wf = create_wf(client, alice)
    assert client.patch(url_one(alice, wf["id"]), json={field: ok}, headers=alice.h()).status_code == 200
    r = client.patch(url_one(alice, wf["id"]), json={field: bad}, headers=alice.h())
    assert r.status_code == 400 and field in r.get_json()["error"]["fields"]


def test_each_bad_field_is_named(client, alice):
    r = post(client, alice, {"projectId": alice.project_id, "name": "", "image": "x", "command": ["a"] * 65,
                             "bogus": 1, "timeoutSec": "60"})
    fields = r.get_json()["error"]["fields"]
    assert fields["command"] == "at most 64 args"
    assert set(fields) == {"name", "command", "bogus", "timeoutSec"}
    assert fields["bogus"] == "unknown field"


def test_required_fields(client, alice):
    fields = post(client, alice, {}).get_json()["error"]["fields"]
    assert {"projectId", "name", "image"} <= set(fields)


def test_project_id_must_equal_the_path(client, alice):
    r = post(client, alice, wf_body(alice, projectId=alice.project_id + 100))
    assert r.status_code == 400 and "projectId" in r.get_json()["error"]["fields"]


def test_environment_must_belong_to_the_project(client, alice, charlie):
    r = post(client, alice, wf_body(alice, environmentId=charlie.environment_id))
    assert r.status_code == 400 and "environmentId" in r.get_json()["error"]["fields"]


def test_patch_rejects_unknown_fields_and_nulls(client, alice):
    wf = create_wf(client, alice)
    for body, field in (({"projectId": 3}, "projectId"), ({"name": None}, "name"), ({"timeoutSec": None}, "timeoutSec")):
        r = client.patch(url_one(alice, wf["id"]), json=body, headers=alice.h())
        assert r.status_code == 400 and field in r.get_json()["error"]["fields"]


def test_patch_can_clear_command(client, alice):
    wf = create_wf(client, alice)
    assert client.patch(url_one(alice, wf["id"]), json={"command": None}, headers=alice.h()).get_json()["command"] is None


@pytest.mark.parametrize("data,ctype,status", [
    ("{not json", "application/json", 400),
    ("[1, 2]", "application/json", 400),
    ("name=x", "application/x-www-form-urlencoded", 415),
    ('{"a": 1}', "text/plain", 415),
    ("", "application/json", 400),
])
def test_bad_bodies(client, alice, data, ctype, status):
    r = client.post(url_list(alice), data=data, content_type=ctype, headers=alice.h())
    assert r.status_code == status
    assert r.get_json()["error"]["code"]


def test_oversized_body_is_413(client, alice):
    body = json.dumps(wf_body(alice, env={"BIG": "x" * (1024 * 1024)}))
    r = client.post(url_list(alice), data=body, content_type="application/json", headers=alice.h())
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "payload_too_large"


def test_missing_and_bad_credentials_are_401(client, alice):
    for headers in ({}, {"Authorization": "Bearer hs_live_nope"}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer"}, {"Authorization": "Bearer sk_live_" + "x" * 40}):
        r = client.get(url_list(alice), headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.get_json()["error"]["code"]


def test_read_keys_may_only_read(client, alice):
    wf = create_wf(client, alice)
    assert client.get(url_list(alice), headers=alice.h("read")).status_code == 200
    assert client.get(url_one(alice, wf["id"]), headers=alice.h("read")).status_code == 200
    assert post(client, alice, wf_body(alice), key="read").status_code == 403
    assert client.patch(url_one(alice, wf["id"]), json={"name": "x"}, headers=alice.h("read")).status_code == 403
    assert client.delete(url_one(alice, wf["id"]), headers=alice.h("read")).status_code == 403
    assert client.post(url_one(alice, wf["id"]) + "/trigger", headers=alice.h("read")).status_code == 403


def test_test_keys_may_not_touch_production(app, client, alice):
    wf = create_wf(client, alice)
    assert post(client, alice, wf_body(alice), key="test").status_code == 403
    assert client.post(url_one(alice, wf["id"]) + "/trigger", headers=alice.h("test")).status_code == 403
    assert client.patch(url_one(alice, wf["id"]), json={"name": "x"}, headers=alice.h("test")).status_code == 403
    assert client.delete(url_one(alice, wf["id"]), headers=alice.h("test")).status_code == 403
    # outside Production they may act
    staging_id = client.post(f"/api/projects/{alice.team_id}/{alice.project_id}/environments",
                             json={"name": "Staging"}, headers=alice.h()).get_json()["id"]
    r = post(client, alice, wf_body(alice, environmentId=staging_id), key="test")
    assert r.status_code == 201
    staged = r.get_json()["id"]
    assert client.post(url_one(alice, staged) + "/trigger", headers=alice.h("test")).status_code == 202
    listed = client.get(url_list(alice), headers=alice.h("test")).get_json()["workflows"]
    assert [w["id"] for w in listed] == [staged]


def test_other_teams_get_404_on_every_workflow_route(client, alice, charlie):
    wf = create_wf(client, alice)
    own = url_one(alice, wf["id"])
    for method, path in (
        ("get", url_list(alice)), ("post", url_list(alice)), ("get", own), ("patch", own), ("delete", own),
        ("post", own + "/trigger"), ("get", own + "/runs"),
        # charlie's own team path, alice's workflow
        ("get", url_one(charlie, wf["id"])), ("patch", url_one(charlie, wf["id"])),
        ("delete", url_one(charlie, wf["id"])), ("post", url_one(charlie, wf["id"]) + "/trigger"),
        ("get", url_one(charlie, wf["id"]) + "/runs"),
        ("get", f"/api/projects/{charlie.team_id}/{alice.project_id}/workflows"),
        ("post", f"/api/projects/{charlie.team_id}/{alice.project_id}/workflows"),
    ):
        r = getattr(client, method)(path, json=wf_body(charlie), headers=charlie.h())
        assert r.status_code == 404, (method, path, r.status_code)
        assert r.get_json()["error"]["code"] == "not_found"
    assert client.get(own, headers=alice.h()).get_json()["name"] == "job"


def test_session_cookie_works_for_members(client, alice, bob):
    wf = create_wf(client, alice)
    client.post("/login", data={"email": bob.email, "password": bob.password})
    assert client.get(url_one(alice, wf["id"])).status_code == 200
    assert client.post(url_one(alice, wf["id"]) + "/trigger").status_code == 202


def test_unknown_api_paths_answer_json(client, alice):
    r = client.get("/api/nothing/here", headers=alice.h())
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    r = client.put(url_list(alice), headers=alice.h())
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"
    r = client.get("/api/projects/x/y/workflows", headers=alice.h())
    assert r.status_code == 404 and r.is_json


def test_image_with_local_registry(client, alice):
    assert post(client, alice, wf_body(alice, image=TEST_IMAGE)).status_code == 201


def test_nul_characters_are_a_400_not_a_database_error(client, alice):
    for field, value in (("name", "a\x00b"), ("command", ["a\x00"]), ("env", {"K": "v\x00"}), ("image", "bu\x00sy")):
        r = post(client, alice, wf_body(alice, **{field: value}))
        assert r.status_code == 400 and field in r.get_json()["error"]["fields"], field
    r = client.post(f"/api/projects/{alice.team_id}/{alice.project_id}/registry-credentials",
                    json={"registry": "ghcr.io", "username": "u\x00", "password": "p"}, headers=alice.h())
    assert r.status_code == 400 and "username" in r.get_json()["error"]["fields"]


def test_ids_that_cannot_exist_are_404(client, alice):
    for path in (f"/api/workflows/{alice.team_id}/workflows/wf%00x", f"/api/workflows/{alice.team_id}/workflows/x'y",
                 f"/api/workflows/{alice.team_id}/workflows/runs/run%00", f"/api/projects/{2**31}/1/workflows",
                 f"/api/projects/{alice.team_id}/{2**40}/registry-credentials/{2**70}"):
        r = client.get(path, headers=alice.h())
        assert r.status_code in (404, 405) and r.is_json, path
    r = client.get(f"/api/projects/{alice.team_id}/{alice.project_id}/workflows",
                   headers={"Authorization": "Bearer hs_live_abc\x00def"})
    assert r.status_code == 401
