"""Pulls through a real private registry (Debian's docker-registry, htpasswd auth on 127.0.0.1:5001)."""
from __future__ import annotations

import pytest

from conftest import AUTH, REGISTRY, create_wf, wait_status

pytestmark = pytest.mark.usefixtures("worker")


def run_image(client, m, image):
    wf = create_wf(client, m, image=image, command=["sh", "-c", "echo pulled"])
    run = client.post(f"/api/workflows/{m.team_id}/workflows/{wf['id']}/trigger", headers=m.h()).get_json()
    return wait_status(client, m, run["id"], timeout=60)


def test_pull_without_credentials_is_refused(client, alice, private_image):
    done = run_image(client, alice, private_image)
    assert done["status"] == "failed"
    assert done["error"].startswith(f"could not pull the image {private_image}")
    assert "Traceback" not in done["error"]


def test_pull_with_stored_credentials(client, alice, charlie, private_image, docker_api):
    url = f"/api/projects/{alice.team_id}/{alice.project_id}/registry-credentials"
    r = client.post(url, json={"registry": REGISTRY, **AUTH}, headers=alice.h())
    assert r.status_code == 201
    listed = client.get(url, headers=alice.h()).get_json()["registryCredentials"]
    assert [(c["registry"], c["username"]) for c in listed] == [(REGISTRY, "tester")]
    assert "password" not in listed[0]
    done = run_image(client, alice, private_image)
    assert done["status"] == "succeeded", done
    assert done["imageDigest"].startswith("sha256:")
    assert docker_api.inspect_image(private_image)["RepoDigests"][0].endswith(done["imageDigest"])
    # another team's project does not get alice's credentials
    docker_api.remove_image(private_image)
    assert run_image(client, charlie, private_image)["status"] == "failed"


def test_wrong_password_is_refused(client, alice, private_image):
    url = f"/api/projects/{alice.team_id}/{alice.project_id}/registry-credentials"
    client.post(url, json={"registry": REGISTRY, "username": "tester", "password": "wrong"}, headers=alice.h())
    assert run_image(client, alice, private_image)["status"] == "failed"


def test_credential_routes(client, alice, charlie):
    url = f"/api/projects/{alice.team_id}/{alice.project_id}/registry-credentials"
    r = client.post(url, json={"registry": REGISTRY, "username": "u", "password": "p"}, headers=alice.h())
    cred = r.get_json()
    assert client.post(url, json={"registry": REGISTRY, "username": "u", "password": "p"},
                       headers=alice.h()).status_code == 409
    for bad in ({"registry": "not a host!", "username": "u", "password": "p"}, {"registry": REGISTRY},
                {"registry": REGISTRY, "username": "u", "password": "p", "extra": 1}):
        r = client.post(url, json=bad, headers=alice.h())
        assert r.status_code == 400 and r.get_json()["error"]["fields"]
    assert client.post(url, json={"registry": "x.io", "username": "u", "password": "p"},
                       headers=alice.h("read")).status_code == 403
    assert client.get(url, headers=charlie.h()).status_code == 404
    assert client.delete(f"{url}/{cred['id']}", headers=charlie.h()).status_code == 404
    assert client.delete(f"{url}/{cred['id']}", headers=alice.h()).status_code == 204
    assert client.get(url, headers=alice.h()).get_json()["registryCredentials"] == []
