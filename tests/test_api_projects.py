"""Projects and environments (an extension of the contract): where non-Production workflows live."""
from __future__ import annotations

import json

from conftest import wf_body


def projects_url(m):
    return f"/api/teams/{m.team_id}/projects"


def envs_url(m, project_id=None):
    return f"/api/projects/{m.team_id}/{project_id or m.project_id}/environments"


def test_every_project_starts_with_production(client, alice):
    listed = client.get(projects_url(alice), headers=alice.h("read")).get_json()["projects"]
    assert [(p["id"], p["name"]) for p in listed] == [(alice.project_id, "default")]
    assert [(e["name"], e["production"]) for e in listed[0]["environments"]] == [("Production", True)]
    r = client.post(projects_url(alice), json={"name": "pipelines"}, headers=alice.h())
    assert r.status_code == 201
    project = r.get_json()
    assert project["teamId"] == alice.team_id and [e["name"] for e in project["environments"]] == ["Production"]
    assert client.get(envs_url(alice, project["id"]), headers=alice.h()).get_json()["environments"] == \
        project["environments"]


def test_names_are_validated_and_unique(client, alice):
    for name, code in (("x" * 100, 201), ("x" * 101, 400), ("", 400), ("   ", 400), ("Staging", 201),
                       ("Staging", 409), ("Production", 409)):
        r = client.post(envs_url(alice), json={"name": name}, headers=alice.h())
        assert r.status_code == code, (name, r.get_json())
        if code != 201:
            assert r.get_json()["error"]["fields"]["name"]
    assert client.post(projects_url(alice), json={"name": "default"}, headers=alice.h()).status_code == 409
    assert client.post(projects_url(alice), json={"name": "p", "extra": 1}, headers=alice.h()).status_code == 400
    assert client.post(projects_url(alice), data="name=p", headers=alice.h()).status_code == 415


def test_read_keys_and_other_teams(client, alice, charlie):
    assert client.post(envs_url(alice), json={"name": "Staging"}, headers=alice.h("read")).status_code == 403
    assert client.post(projects_url(alice), json={"name": "p"}, headers=alice.h("read")).status_code == 403
    for method, url in (("get", projects_url(alice)), ("post", projects_url(alice)),
                        ("get", envs_url(alice)), ("post", envs_url(alice))):
        r = getattr(client, method)(url, json={"name": "x"}, headers=charlie.h())
        assert r.status_code == 404, (method, url)
    assert client.get(envs_url(charlie, alice.project_id), headers=charlie.h()).status_code == 404


def test_a_test_key_acts_on_workflows_of_a_new_environment(client, alice):
    staging = client.post(envs_url(alice), json={"name": "Staging"}, headers=alice.h("test")).get_json()
    r = client.post(f"/api/projects/{alice.team_id}/{alice.project_id}/workflows",
                    json=wf_body(alice, environmentId=staging["id"]), headers=alice.h("test"))
    assert r.status_code == 201 and r.get_json()["environmentId"] == staging["id"]
    run = client.post(f"/api/workflows/{alice.team_id}/workflows/{r.get_json()['id']}/trigger", headers=alice.h("test"))
    assert run.status_code == 202


def test_cli_creates_projects_and_environments(app, alice):
    runner = app.test_cli_runner()
    made = runner.invoke(args=["projects", "create", "nightly", "--team", str(alice.team_id)])
    assert made.exit_code == 0, made.output
    info = json.loads(made.stdout.strip())
    assert list(info) == ["projectId", "environmentId"]
    env = runner.invoke(args=["environments", "create", "Staging", "--project", str(info["projectId"])])
    assert env.exit_code == 0, env.output
    assert list(json.loads(env.stdout.strip())) == ["environmentId"]
    again = runner.invoke(args=["environments", "create", "Staging", "--project", str(info["projectId"])])
    assert again.exit_code == 1 and "already has an environment" in again.stderr
    assert runner.invoke(args=["projects", "create", "", "--team", str(alice.team_id)]).exit_code == 1
    assert runner.invoke(args=["environments", "create", "x", "--project", "999"]).exit_code == 1
