"""Idempotency-Key on trigger and retry: the same key within 24 h answers the first run, never a
second one, also when the requests race on several web processes; another request under the same
key is refused (422); a bad key is a 400 naming the header."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests

from conftest import create_wf, gunicorn
from runs_api import base


def fire(client, m, wf_id: str, key: str | None, env: dict | None = None):
    headers = {**m.h(), **({"Idempotency-Key": key} if key is not None else {})}
    return client.post(f"{base(m)}/{wf_id}/trigger", headers=headers, json={"env": env or {}})


def run_count(client, m, wf_id: str) -> int:
    return len(client.get(f"{base(m)}/{wf_id}/runs?limit=100", headers=m.h()).get_json()["runs"])


def test_the_same_key_answers_the_first_run(client, alice, charlie):
    wf = create_wf(client, alice)
    first = fire(client, alice, wf["id"], "deploy-2026-12-06", {"SHA": "abc"})
    again = fire(client, alice, wf["id"], "deploy-2026-12-06", {"SHA": "abc"})
    assert first.status_code == again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    assert fire(client, alice, wf["id"], "deploy-2026-12-07", {"SHA": "abc"}).get_json()["id"] != first.get_json()["id"]
    assert fire(client, alice, wf["id"], None).status_code == 202  # no key: every request fires
    assert run_count(client, alice, wf["id"]) == 3
    other = create_wf(client, charlie)  # keys are a team's own
    assert fire(client, charlie, other["id"], "deploy-2026-12-06", {"SHA": "abc"}).get_json()["id"] != first.get_json()["id"]


@pytest.mark.parametrize("change", ["env", "workflow"])
def test_the_same_key_with_another_request_is_refused(client, alice, change):
    wf, second = create_wf(client, alice), create_wf(client, alice)
    fire(client, alice, wf["id"], "k-1", {"A": "1"})
    r = fire(client, alice, second["id"] if change == "workflow" else wf["id"], "k-1", {"A": "2"})
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["error"]["fields"] == {"Idempotency-Key": "already used for another request"}
    assert run_count(client, alice, wf["id"]) == 1 and run_count(client, alice, second["id"]) == 0


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"])
def test_a_bad_key_is_a_400_naming_the_header(client, alice, key):
    wf = create_wf(client, alice)
    r = fire(client, alice, wf["id"], key)
    assert r.status_code == 400 and list(r.get_json()["error"]["fields"]) == ["Idempotency-Key"], r.get_json()
    assert run_count(client, alice, wf["id"]) == 0


def test_a_retry_with_a_key_is_made_once_and_a_key_expires_after_a_day(app, client, alice):
    wf = create_wf(client, alice)
    run = fire(client, alice, wf["id"], None).get_json()
    client.post(f"{base(alice)}/runs/{run['id']}/cancel", headers=alice.h())
    url = f"{base(alice)}/runs/{run['id']}/retry"
    headers = {**alice.h(), "Idempotency-Key": "retry-once"}
    retries = [client.post(url, headers=headers) for _ in range(3)]
    assert [r.status_code for r in retries] == [202] * 3
    assert len({r.get_json()["id"] for r in retries}) == 1 and retries[0].get_json()["retryOf"] == run["id"]
    assert run_count(client, alice, wf["id"]) == 2
    from webapp.extensions import db
    from webapp.models import IdempotencyKey
    from webapp.services.idempotency import prune_expired
    with app.app_context():  # a day and a minute later
        for row in db.session.query(IdempotencyKey).all():
            row.created_at -= timedelta(hours=24, minutes=1)
        db.session.commit()
    retried = fire(client, alice, wf["id"], "retry-once")  # an expired key is free again, for anything
    assert retried.status_code == 202 and "Idempotent-Replayed" not in retried.headers
    with app.app_context():
        assert prune_expired() == 0  # the new use replaced the expired row; nothing else is old
        assert db.session.query(IdempotencyKey).count() == 1
        db.session.query(IdempotencyKey).update({"created_at": IdempotencyKey.created_at - timedelta(days=2)})
        db.session.commit()
        assert prune_expired() == 1 and db.session.query(IdempotencyKey).count() == 0


def test_racing_requests_with_one_key_on_two_web_processes_make_one_run(client, alice):
    wf = create_wf(client, alice)
    settings = {"WEB_WORKERS": "1", "WEB_CONNECTIONS": "8", "TRIGGER_RATE_LIMIT": "1000 per minute"}
    with gunicorn(**settings) as (_, one), gunicorn(**settings) as (_, two):
        for attempt in range(3):  # three keys, each sent 16 times at once, half to each process
            key = f"race-{attempt}"
            start = threading.Barrier(16)

            def send(i: int):
                start.wait()
                return requests.post(f"{(one, two)[i % 2]}{base(alice)}/{wf['id']}/trigger", timeout=60,
                                     headers={**alice.h(), "Idempotency-Key": key}, json={})
            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(send, range(16)))
            assert [r.status_code for r in answers] == [202] * 16, [r.text for r in answers if r.status_code != 202]
            assert len({r.json()["id"] for r in answers}) == 1
            assert sum("Idempotent-Replayed" not in r.headers for r in answers) == 1
    assert run_count(client, alice, wf["id"]) == 3
