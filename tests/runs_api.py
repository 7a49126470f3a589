"""The run routes of the JSON API as the host tests use them (test_hosts, test_two_engines)."""
from __future__ import annotations

from conftest import create_wf


def base(m):
    return f"/api/workflows/{m.team_id}/workflows"


def trigger(client, m, wf_id: str) -> dict:
    r = client.post(f"{base(m)}/{wf_id}/trigger", headers=m.h())
    assert r.status_code == 202, r.get_json()
    return r.get_json()


def fire(client, m, **fields) -> dict:
    return trigger(client, m, create_wf(client, m, **fields)["id"])


def get(client, m, run_id: str) -> dict:
    return client.get(f"{base(m)}/runs/{run_id}", headers=m.h()).get_json()


def lines(client, m, run_id: str) -> list[str]:
    return [l["text"] for l in client.get(f"{base(m)}/runs/{run_id}/logs", headers=m.h()).get_json()["lines"]
            if l["stream"] != "system"]


def containers(api, run_id: str) -> list[dict]:
    """The run's containers on the engine of `api`."""
    return api.containers(all=True, filters={"label": f"workflows.run={run_id}"})
