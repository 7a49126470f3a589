"""The run routes of the JSON API as the host and fleet tests use them."""
from __future__ import annotations

from conftest import create_wf, wait_for
from engine_events import intervals, overlaps


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


def retried_elsewhere(client, m, wf_id: str, run_id: str, lost_host: str, since: float, apis) -> dict:
    """The retry of `run_id`, whose host `lost_host` was lost: it runs on another host, and its
    container started only once the first attempt's had died (the engines' own events, on every
    engine of `apis`). Returns the retry."""
    runs = client.get(f"{base(m)}/{wf_id}/runs", headers=m.h()).get_json()["runs"]
    retry = next(r for r in runs if r["retryOf"] == run_id)
    wait_for(lambda: lines(client, m, retry["id"]), 30)
    assert get(client, m, retry["id"])["workerHost"] not in (None, lost_host)
    spans = [span for api in apis for span in intervals(api, since, {run_id, retry["id"]})]
    assert [s[0] for s in sorted(spans, key=lambda s: s[1])] == [run_id, retry["id"]], spans
    assert not overlaps(spans), spans
    return retry
