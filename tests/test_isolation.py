"""Strangers on a shared fleet, tried as an attacker would: another team's private image named by
its id, quotas that keep one team from filling what all share. Real engine, registry, processes."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect
from simple_websocket import Client
from simple_websocket import ConnectionError as HandshakeRefused
from sqlalchemy import func, select, update

from browsing import login
from conftest import AUTH, REGISTRY, ROOT, SLOT_INDEX, TEST_IMAGE, TEST_SLOT, create_wf, grant_pool, gunicorn, wait_for, wait_status, wf_body
from private_net import BANNER, PrivateNet
from private_net import PORT as NET_PORT
from runs_api import base

from webapp.extensions import db
from webapp.models import Event, Workflow


def _on_the_engine(client, m, image: str) -> None:
    """`m` pulls its private image with its own credentials: the image is now on the engine."""
    url = f"/api/projects/{m.team_id}/{m.project_id}/registry-credentials"
    assert client.post(url, json={"registry": REGISTRY, **AUTH}, headers=m.h()).status_code == 201
    wf = create_wf(client, m, image=image, command=["sh", "-c", "echo mine"])
    run = client.post(f"{base(m)}/{wf['id']}/trigger", headers=m.h()).get_json()
    assert wait_status(client, m, run["id"], timeout=60)["status"] == "succeeded"


# -- 1. images: a local image is used only by one of its own names -------------------------------
def test_an_image_id_or_a_prefix_of_one_is_refused_as_a_reference(client, alice, charlie, private_image,  # noqa: F811
                                                                    docker_api, procs):
    procs.worker(1)
    _on_the_engine(client, alice, private_image)
    image_id = docker_api.inspect_image(private_image)["Id"]
    for ref in (image_id[7:19], image_id[7:], image_id, image_id.upper()):
        r = client.post(f"/api/projects/{charlie.team_id}/{charlie.project_id}/workflows", headers=charlie.h(),
                        json={"projectId": charlie.project_id, "name": "steal", "image": ref,
                              "command": ["cat", "/bin/busybox"]})
        assert r.status_code == 400, (ref, r.get_json())
        assert "image" in str(r.get_json()) and "image id" in str(r.get_json())


def test_a_stored_workflow_naming_an_image_by_id_never_runs_that_image(app, client, alice, charlie,  # noqa: F811
                                                                       private_image, docker_api, procs):
    """A row written before the rule (or by any other path) is checked again where it runs: the
    engine's answer must carry the reference among the image's tags or registry digests."""
    procs.worker(1)
    _on_the_engine(client, alice, private_image)
    prefix = docker_api.inspect_image(private_image)["Id"][7:19]
    wf = create_wf(client, charlie, command=["sh", "-c", "echo stolen; cat /etc/hostname"])
    with app.app_context():
        db.session.execute(update(Workflow).where(Workflow.public_id == wf["id"]).values(image=prefix))
        db.session.commit()
    run = client.post(f"{base(charlie)}/{wf['id']}/trigger", headers=charlie.h()).get_json()
    done = wait_status(client, charlie, run["id"], timeout=60)
    assert done["status"] == "failed" and done["startedAt"] is None, done
    assert f"could not pull the image {prefix}" in done["error"]
    lines = client.get(f"{base(charlie)}/runs/{run['id']}/logs", headers=charlie.h()).get_json()["lines"]
    assert "stolen" not in [line["text"] for line in lines]


# -- 3. quotas: no team fills what all share ----------------------------------------------------
def _limits(app, m, **values) -> dict:
    """An operator's `flask teams limits TEAM --set NAME=N …`, through the real CLI."""
    args = ["teams", "limits", str(m.team_id)] + [a for k, v in values.items() for a in ("--set", f"{k}={v}")]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["limits"]


def _create(client, m, **over):
    return client.post(f"/api/projects/{m.team_id}/{m.project_id}/workflows", headers=m.h(),
                       json=wf_body(m, **over))


def _flood(app, m, n: int) -> None:
    """`n` scheduled workflows of the member's team, written as rows in one transaction (through
    the API they cost a request each: a minute for 500)."""
    from webapp.extensions import db
    from webapp.models import Workflow
    from webapp.models.base import new_public_id, utcnow
    with app.app_context():
        now = utcnow()
        db.session.add_all([Workflow(public_id=new_public_id("wf_"), team_id=m.team_id, project_id=m.project_id,
                                     environment_id=m.environment_id, name=f"flood-{i}", image=TEST_IMAGE, env={},
                                     schedule="* * * * * *", next_run_at=now, created_at=now, updated_at=now)
                            for i in range(n)])
        db.session.commit()


def test_a_team_gets_500_workflows_by_default_and_an_operator_sets_another_number(app, client, alice, charlie):
    assert _limits(app, alice)["workflows"] == 500
    _flood(app, alice, 498)  # rows like the API's, in one transaction: the limit counts rows
    for i in (498, 499):
        assert _create(client, alice, name=f"flood-{i}", schedule="* * * * * *").status_code == 201
    r = _create(client, alice, name="one-too-many")
    assert r.status_code == 429, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == "quota_exceeded" and "workflows" in error["message"] and "500" in error["message"]
    assert _create(client, charlie, name="another-team").status_code == 201  # a team's own count
    assert _limits(app, alice, workflows=501)["workflows"] == 501
    assert _create(client, alice, name="allowed-now").status_code == 201
    assert _limits(app, alice, workflows="default")["workflows"] == 500


def test_env_bytes_are_bounded_per_workflow_and_per_run(app, client, alice):
    big = {f"V{i}": "x" * 4000 for i in range(20)}  # 80 KB, every value within its own cap
    r = _create(client, alice, env=big)
    assert r.status_code == 400 and "env" in r.get_json()["error"]["fields"], r.get_json()
    assert "65536" in r.get_json()["error"]["fields"]["env"]
    wf = create_wf(client, alice, env={f"V{i}": "x" * 4000 for i in range(15)})  # 60 KB
    r = client.patch(f"{base(alice)}/{wf['id']}", headers=alice.h(), json={"env": big})
    assert r.status_code == 400 and "env" in r.get_json()["error"]["fields"]
    r = client.post(f"{base(alice)}/{wf['id']}/trigger", headers=alice.h(),
                    json={"env": {f"W{i}": "y" * 4000 for i in range(3)}})  # 72 KB merged
    assert r.status_code == 400 and "env" in r.get_json()["error"]["fields"]


def test_the_shortest_schedule_interval_is_the_operators(app, client, alice):
    assert _create(client, alice, schedule="*/2 * * * * *").status_code == 201  # default 1 s: the contract's
    _limits(app, alice, minScheduleIntervalSec=60)
    r = _create(client, alice, schedule="*/2 * * * * *")
    assert r.status_code == 400 and "60" in r.get_json()["error"]["fields"]["schedule"]
    r = _create(client, alice, schedule="0,30 * * * *")  # 30 min apart, then 30 min
    assert r.status_code == 201
    wf = r.get_json()
    r = client.patch(f"{base(alice)}/{wf['id']}", headers=alice.h(), json={"schedule": "0,1 * * * * *"})
    assert r.status_code == 400 and "schedule" in r.get_json()["error"]["fields"]


def test_a_full_queue_skips_a_teams_fires_and_refuses_its_triggers_but_not_another_teams(
        app, client, alice, charlie, procs):
    _limits(app, alice, queuedRuns=2)
    grant_pool(app, alice, "nobody-works-here")
    grant_pool(app, charlie, "nobody-works-here")
    manual = create_wf(client, alice, workerPool="nobody-works-here")
    for _ in range(2):
        assert client.post(f"{base(alice)}/{manual['id']}/trigger", headers=alice.h()).status_code == 202
    r = client.post(f"{base(alice)}/{manual['id']}/trigger", headers=alice.h())
    assert r.status_code == 429 and "queuedRuns" in r.get_json()["error"]["message"], r.get_json()
    flood = create_wf(client, alice, schedule="* * * * * *", workerPool="nobody-works-here")
    theirs = create_wf(client, charlie, schedule="* * * * * *", workerPool="nobody-works-here")
    procs.scheduler()
    with app.app_context():
        first = db.session.scalar(select(Workflow.next_run_at).where(Workflow.public_id == flood["id"]))

    def moved_on(seconds):  # the flood's schedule went on past several instants
        with app.app_context():
            at = db.session.scalar(select(Workflow.next_run_at).where(Workflow.public_id == flood["id"]))
            db.session.rollback()
            return at is not None and (at - first).total_seconds() >= seconds

    def missed() -> int:
        with app.app_context():
            wf_id = db.session.scalar(select(Workflow.id).where(Workflow.public_id == flood["id"]))
            n = db.session.scalar(select(func.count(Event.id)).where(Event.workflow_id == wf_id,
                                                                     Event.kind == "workflow.missed"))
            db.session.rollback()
            return n
    wait_for(lambda: moved_on(4), 30)
    runs = client.get(f"{base(alice)}/{flood['id']}/runs", headers=alice.h()).get_json()["runs"]
    assert runs == []  # the queue was full: no run row for any of them
    assert len(client.get(f"{base(charlie)}/{theirs['id']}/runs", headers=charlie.h()).get_json()["runs"]) >= 3
    told = missed()  # the stretch's one (and one more if the scheduler came up after the first instant)
    assert told >= 1
    wait_for(lambda: moved_on(8), 30)
    assert missed() == told  # one for the stretch, not one per skipped instant


def test_the_project_page_shows_the_teams_limits(app, client, alice, page, server):  # noqa: F811
    _limits(app, alice, queuedRuns=7)
    create_wf(client, alice)
    login(page, server, alice)
    page.goto(f"{server}/teams/{alice.team_id}/projects/{alice.project_id}/settings")
    rows = page.locator("#limits tbody tr")
    expect(rows.filter(has_text="queuedRuns")).to_contain_text("7")
    expect(rows.filter(has_text="workflows")).to_contain_text("500")
    expect(rows.filter(has_text="workflows").locator("td").nth(2)).to_have_text("1")


# -- 2. egress: the internet, never our services or private networks ----------------------------
@pytest.fixture(scope="module")
def private_net():
    net = PrivateNet(SLOT_INDEX + 1).open()
    yield net
    net.close()


def test_a_run_container_reaches_no_private_address_but_one_opened_on_purpose(client, alice, procs, docker_api,
                                                                             private_net):
    from jobs.engine import RUNS_NETWORK
    procs.worker(1)
    probes = dict(private_net.addresses)
    probe = "; ".join(f"(nc -w 3 {address} {NET_PORT} </dev/null | grep -q {BANNER}) && echo reached-{name} "
                      f"|| echo blocked-{name}" for name, address in probes.items())
    # this machine's own services, through the bridge's gateway: Redis and PostgreSQL
    probe += "; gw=$(ip route | awk '/default/ {print $3}'); for p in 6379 5432; do " \
             "(nc -w 3 $gw $p </dev/null; echo \"exit $?\") | tail -1 | grep -q 'exit 0' && echo reached-$p || echo blocked-$p; done"
    wf = create_wf(client, alice, command=["sh", "-c", probe], timeoutSec=120)
    run = client.post(f"{base(alice)}/{wf['id']}/trigger", headers=alice.h()).get_json()
    done = wait_status(client, alice, run["id"], timeout=120)
    assert done["status"] == "succeeded", done
    lines = [line["text"] for line in client.get(f"{base(alice)}/runs/{run['id']}/logs",
                                                   headers=alice.h()).get_json()["lines"] if line["stream"] == "stdout"]
    assert sorted(lines) == sorted([f"blocked-{n}" for n in probes if n != "opened"] + ["reached-opened",
                                                                                         "blocked-6379", "blocked-5432"]), lines
    # the same address is reachable from this machine: the rule is what stops the container
    with socket.create_connection((private_net.addresses["metadata"], NET_PORT), timeout=5) as s:
        assert BANNER.encode() in s.recv(100)
    assert RUNS_NETWORK in docker_api.inspect_network(RUNS_NETWORK)["Name"]


def test_a_job_written_into_redis_runs_no_code_of_its_own(app, procs, tmp_path):
    """Whoever gets to write into Redis (it has a password, and run containers cannot reach it)
    still cannot make a worker run code: pickled jobs are not read, and only our tasks run."""
    from rq import Queue
    from rq.serializers import JSONSerializer
    procs.worker(1)
    pickled, named = tmp_path / "pickled", tmp_path / "named"
    with app.app_context():
        from webapp.connections import get_redis
        redis = get_redis()
        Queue("runs", connection=redis).enqueue("os.system", f"touch {pickled}")  # RQ's default: pickle
        job = Queue("runs", connection=redis, serializer=JSONSerializer).enqueue("os.system", f"touch {named}")

        def consumed():
            return redis.llen("rq:queue:runs") == 0 and job.get_status(refresh=True) in ("failed", "finished")
        wait_for(consumed, 30)
        assert job.get_status() == "failed"
    assert not pickled.exists() and not named.exists()


# -- 5. /metrics names every team: production needs its token ------------------------------------
def test_production_refuses_to_start_without_a_metrics_token(monkeypatch):
    from webapp import create_app
    from webapp.config import ConfigError
    monkeypatch.setenv("WORKFLOWS_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "a-real-secret-of-enough-length")
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        create_app()
    monkeypatch.setenv("METRICS_TOKEN", "m" * 24)
    app = create_app()
    assert app.test_client().get("/metrics").status_code == 401
    assert app.test_client().get("/metrics", headers={"Authorization": "Bearer " + "m" * 24}).status_code == 200


def test_in_production_a_worker_that_cannot_guard_egress_does_not_start(tmp_path):
    """A remote engine the worker cannot install rules for: it refuses, saying why."""
    env = dict(os.environ, WORKFLOWS_ENV="production", SECRET_KEY="a-real-secret-of-enough-length",
               METRICS_TOKEN="m" * 24, DOCKER_HOST="tcp://192.0.2.250:2376", DOCKER_TLS_VERIFY="1",
               DOCKER_CERT_PATH=str(tmp_path))
    p = subprocess.run([str(ROOT / ".venv/bin/flask"), "--app", "wsgi", "worker"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "private networks" in p.stderr and "RUNS_EGRESS_RULES" in p.stderr, p.stderr


# -- 4. pools have owners ---------------------------------------------------------------------------
def test_a_pool_set_aside_for_a_team_is_out_of_another_teams_reach(app, client, alice, charlie, procs):
    r = _create(client, charlie, workerPool="alice-gpu")
    assert r.status_code == 400 and "workerPool" in r.get_json()["error"]["fields"], r.get_json()
    grant_pool(app, alice, "alice-gpu")
    assert _create(client, charlie, workerPool="alice-gpu").status_code == 400  # still not charlie's
    theirs = create_wf(client, charlie)
    r = client.patch(f"{base(charlie)}/{theirs['id']}", headers=charlie.h(), json={"workerPool": "alice-gpu"})
    assert r.status_code == 400 and "workerPool" in r.get_json()["error"]["fields"]
    mine = create_wf(client, alice, command=["sh", "-c", "echo on gpu"], workerPool="alice-gpu")
    # taken back before the run is taken: the worker checks again and starts nothing
    result = app.test_cli_runner().invoke(args=["pools", "deny", "alice-gpu", "--team", str(alice.team_id)])
    assert result.exit_code == 0, result.output
    procs.worker(1, args=("--pool", "alice-gpu"))
    run = client.post(f"{base(alice)}/{mine['id']}/trigger", headers=alice.h()).get_json()
    done = wait_status(client, alice, run["id"], timeout=60)
    assert done["status"] == "failed" and done["startedAt"] is None
    assert "the worker pool alice-gpu is not this team's" in done["error"]


# -- 9. containers leave nothing behind ---------------------------------------------------------
def test_a_runs_anonymous_volume_goes_with_its_container(client, alice, procs, docker_api):
    image = f"workflows.local/with-volume:{TEST_SLOT}"
    base_container = docker_api.create_container(TEST_IMAGE, command=["true"])
    try:
        docker_api.commit(base_container["Id"], repository=image.split(":")[0], tag=TEST_SLOT,
                          changes=["VOLUME /d"])
    finally:
        docker_api.remove_container(base_container["Id"])
    marker = f"mark-{uuid.uuid4().hex}"
    procs.worker(1)
    wf = create_wf(client, alice, image=image, command=["sh", "-c", f"echo x > /d/{marker}"])
    run = client.post(f"{base(alice)}/{wf['id']}/trigger", headers=alice.h()).get_json()
    assert wait_status(client, alice, run["id"], timeout=60)["status"] == "succeeded"
    wait_for(lambda: not docker_api.containers(all=True, filters={"label": f"workflows.run={run['id']}"}), 30)

    def holding():
        return [v["Name"] for v in docker_api.volumes()["Volumes"] or []
                if Path(v["Mountpoint"], marker).exists()]
    assert holding() == []


# -- 7. webhooks: one resolution, a global address, that address connected to ----------------------
def test_webhook_targets_in_shared_address_space_or_not_resolving_are_never_sent_to(app, client, alice):
    from webapp.notify import TRANSPORTS, Message, TransportError
    url = f"/api/teams/{alice.team_id}/notification-channels"
    r = client.post(url, headers=alice.h(), json={"kind": "webhook", "name": "cgnat", "target": "https://100.64.1.2/hook"})
    assert r.status_code == 400 and "100.64.1.2" in r.get_json()["error"]["fields"]["target"], r.get_json()
    message = Message(event="test", workflow_name="w", workflow_id="wf_x", run_id="run_x", status="failed",
                      exit_code=1, attempts=1, error=None, url="http://x/", finished_at=None)
    with app.app_context():
        with pytest.raises(TransportError) as e:
            TRANSPORTS["slack"]({"url": "https://nowhere.invalid/hook"}, app.config).notify(message)
    assert "does not resolve" in e.value.message and not e.value.permanent  # DNS may come back: retried


# -- 6. no SSRF through image pulls ---------------------------------------------------------------
def test_an_image_on_a_registry_at_a_private_address_is_refused(app, client, alice, procs):
    for image in ("localhost:5000/x:1", "127.0.0.2:5001/private/x:1", "10.1.2.3:5000/x:1", "169.254.169.254/x:1"):
        r = _create(client, alice, image=image)
        assert r.status_code == 400 and "not a public address" in r.get_json()["error"]["fields"].get("image", ""), \
            (image, r.get_json())
    assert _create(client, alice, image="127.0.0.1:5001/team/img:v1").status_code == 201  # REGISTRY_ALLOWED_HOSTS
    procs.worker(1)
    wf = create_wf(client, alice)
    with app.app_context():  # a row written before the rule, or by any other path: checked where it runs
        db.session.execute(update(Workflow).where(Workflow.public_id == wf["id"]).values(image="127.0.0.2:5001/x:1"))
        db.session.commit()
    run = client.post(f"{base(alice)}/{wf['id']}/trigger", headers=alice.h()).get_json()
    done = wait_status(client, alice, run["id"], timeout=60)
    assert done["status"] == "failed" and "not a public address" in done["error"], done


# -- 8. one team cannot hold every web thread ------------------------------------------------------
def test_while_a_team_holds_its_most_streams_another_teams_api_calls_answer(app, client, alice, charlie):
    wf = create_wf(client, alice)
    run_id = client.post(f"{base(alice)}/{wf['id']}/trigger", headers=alice.h()).get_json()["id"]  # stays queued
    streams = []
    with gunicorn(WEB_WORKERS="1", WEB_CONNECTIONS="8") as (_, base_url):
        url = f"{base_url.replace('http://', 'ws://')}/api/workflows/{alice.team_id}/workflows/runs/{run_id}/logs/stream"
        refused = 0
        for _ in range(8):  # every thread of the process, if it let them
            try:
                streams.append(Client.connect(url, headers=alice.h()))
            except HandshakeRefused as e:
                refused += 1
                assert "503" in str(e)
        assert len(streams) == 4 and refused == 4  # half of WEB_CONNECTIONS
        started = time.monotonic()
        r = requests.get(f"{base_url}/api/projects/{charlie.team_id}/{charlie.project_id}/workflows",
                         headers=charlie.h(), timeout=10)
        assert r.status_code == 200 and time.monotonic() - started < 1.0
        for ws in streams:
            ws.close()


# -- 10. smaller ones -------------------------------------------------------------------------------
def test_production_refuses_an_engine_over_plain_tcp(monkeypatch):
    from webapp import create_app
    from webapp.config import ConfigError
    for name, value in (("WORKFLOWS_ENV", "production"), ("SECRET_KEY", "a-real-secret-of-enough-length"),
                        ("METRICS_TOKEN", "m" * 24), ("DOCKER_HOST", "tcp://192.0.2.250:2375")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    with pytest.raises(ConfigError, match="DOCKER_TLS_VERIFY"):
        create_app()


def test_a_read_key_sees_no_password_inside_a_url_whatever_the_variables_name(client, alice):
    wf = create_wf(client, alice, env={"DATABASE_URL": "postgres://app:hunter2@db.internal/app", "PLAIN": "x"})
    seen = client.get(f"{base(alice)}/{wf['id']}", headers=alice.h("read")).get_json()["env"]
    assert "hunter2" not in json.dumps(seen) and seen["PLAIN"] == "x" and seen["DATABASE_URL"].startswith("postgres://app:")


def test_production_never_reads_secrets_with_the_public_development_key(app, monkeypatch):
    from cryptography.fernet import InvalidToken

    from webapp import create_app
    from webapp.config import DEV_SECRET
    from webapp.crypto import encrypt
    dev = create_app({"SECRET_KEY": DEV_SECRET})
    with dev.app_context():
        token = encrypt("saved under the public key")
    for name, value in (("WORKFLOWS_ENV", "production"), ("SECRET_KEY", "a-real-secret-of-enough-length"),
                        ("METRICS_TOKEN", "m" * 24)):
        monkeypatch.setenv(name, value)
    prod = create_app()
    from webapp.crypto import decrypt
    with prod.app_context():
        with pytest.raises(InvalidToken):
            decrypt(token)


def test_test_keys_add_no_channel_or_registry_credential_production_would_use(client, alice):
    r = client.post(f"/api/teams/{alice.team_id}/notification-channels", headers=alice.h("test"),
                    json={"kind": "slack", "name": "x", "target": "https://hooks.example.com/x"})
    assert r.status_code == 403 and "hs_test_" in r.get_json()["error"]["message"]
    r = client.post(f"/api/projects/{alice.team_id}/{alice.project_id}/registry-credentials", headers=alice.h("test"),
                    json={"registry": REGISTRY, **AUTH})
    assert r.status_code == 403


def test_in_production_healthz_tells_anyone_only_what_is_up(monkeypatch):
    from webapp import create_app
    for name, value in (("WORKFLOWS_ENV", "production"), ("SECRET_KEY", "a-real-secret-of-enough-length"),
                        ("METRICS_TOKEN", "m" * 24)):
        monkeypatch.setenv(name, value)
    client = create_app().test_client()
    body = client.get("/healthz").get_json()
    assert set(body["worker"]) == {"ok"} and set(body["redis"]) == {"ok"}  # no error text, no host:pid
    full = client.get("/healthz", headers={"Authorization": "Bearer " + "m" * 24}).get_json()
    assert "processes" in full["worker"]


def test_a_read_only_root_filesystem_with_a_bounded_tmp(client, alice, procs):
    assert _create(client, alice, readOnlyRootfs="yes").status_code == 400
    procs.worker(1)
    probe = ("touch /rootfs-write 2>/dev/null && echo root-written || echo root-refused; "
             "touch /tmp/x && echo tmp-written; df -m /tmp | awk 'NR==2 {print \"tmp-mb \" $2}'")
    wf = create_wf(client, alice, command=["sh", "-c", probe], readOnlyRootfs=True)
    assert wf["readOnlyRootfs"] is True
    run = client.post(f"{base(alice)}/{wf['id']}/trigger", headers=alice.h()).get_json()
    assert wait_status(client, alice, run["id"], timeout=60)["status"] == "succeeded"
    lines = [line["text"] for line in client.get(f"{base(alice)}/runs/{run['id']}/logs", headers=alice.h())
             .get_json()["lines"] if line["stream"] == "stdout"]
    assert lines == ["root-refused", "tmp-written", "tmp-mb 64"], lines
    plain = create_wf(client, alice, command=["sh", "-c", "touch /rootfs-write && echo root-written"])
    assert plain["readOnlyRootfs"] is False


def test_past_a_teams_daily_output_runs_go_on_and_their_output_is_counted_not_kept(app, client, alice, charlie,
                                                                                   procs):
    _limits(app, alice, outputBytesPerDay=20000)
    procs.worker(1)
    flood = ["sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done"]

    def run_of(m, command):
        wf = create_wf(client, m, command=command)
        run = client.post(f"{base(m)}/{wf['id']}/trigger", headers=m.h()).get_json()
        done = wait_status(client, m, run["id"], timeout=60)
        lines = client.get(f"{base(m)}/runs/{run['id']}/logs", headers=m.h()).get_json()["lines"]
        return done, lines
    done, lines = run_of(alice, flood)  # 90 KB of output
    assert done["status"] == "succeeded"
    kept = sum(len(line["text"]) + 1 for line in lines if line["stream"] == "stdout")
    assert 0 < kept <= 20000, kept  # cut at the limit, inside the chunk that reached it
    assert any("outputBytesPerDay" in line["text"] for line in lines if line["stream"] == "system")
    done, lines = run_of(alice, ["sh", "-c", "echo later"])  # the same day: nothing more is kept
    assert done["status"] == "succeeded" and "later" not in [line["text"] for line in lines]
    done, lines = run_of(charlie, ["sh", "-c", "echo mine"])  # another team's day is its own
    assert "mine" in [line["text"] for line in lines]


# -- 9. images no run used for IMAGE_KEEP_DAYS leave the engine -------------------------------------
def test_an_image_no_run_used_for_the_keep_days_is_pruned_and_others_stay(app, client, alice, procs, docker_api):
    from jobs import images
    stale, fresh, unused = (f"workflows.local/prune-{name}:{TEST_SLOT}" for name in ("stale", "fresh", "unused"))
    for ref in (stale, fresh, unused):  # three copies of the test image, each with a layer of its own
        c = docker_api.create_container(TEST_IMAGE, command=["true"], labels={"x": ref})
        try:
            docker_api.commit(c["Id"], repository=ref.split(":")[0], tag=TEST_SLOT, changes=[f"LABEL which={ref}"])
        finally:
            docker_api.remove_container(c["Id"])
    procs.worker(1)
    for ref in (stale, fresh):
        wf = create_wf(client, alice, image=ref, command=["sh", "-c", "echo used"])
        run = client.post(f"{base(alice)}/{wf['id']}/trigger", headers=alice.h()).get_json()
        assert wait_status(client, alice, run["id"], timeout=60)["status"] == "succeeded"
        wait_for(lambda: not docker_api.containers(all=True, filters={"label": f"workflows.run={run['id']}"}), 30)
    with app.app_context():
        folder = images._folder(docker_api)
    stale_id = docker_api.inspect_image(stale)["Id"]
    week_ago = time.time() - 8 * 86400
    os.utime(folder / stale_id.removeprefix("sha256:"), (week_ago, week_ago))  # last used 8 days ago
    # var/images/<engine> is the engine's, shared with the other pass: its aged image may go too
    fresh_id = docker_api.inspect_image(fresh)["Id"]
    removed = images.prune(docker_api, 7)
    assert stale_id in removed and fresh_id not in removed
    assert not docker_api.images(name=stale)  # by full reference: the other pass tags its own copies
    assert docker_api.images(name=fresh) and docker_api.images(name=unused)
    assert docker_api.images(name=TEST_IMAGE.split(":")[0])  # never used here in the last days: not ours to judge
    for ref in (fresh, unused):
        docker_api.remove_image(ref, force=True)


# -- 10. the smaller doors ----------------------------------------------------------------------------
def test_sign_ins_are_throttled_per_account_whatever_the_address(client, alice, charlie):
    def attempt(email, password, address):
        return client.post("/login", data={"email": email, "password": password},
                           environ_base={"REMOTE_ADDR": address}).status_code
    assert [attempt(alice.email, "wrong", f"198.51.100.{i}") for i in range(10)] == [401] * 10
    assert attempt(alice.email, "wrong", "198.51.100.77") == 429  # an eleventh address: the account is held
    assert attempt(alice.email, alice.password, "198.51.100.78") == 429
    assert attempt(charlie.email, "wrong", "198.51.100.77") == 401  # another account is not


def test_sign_ins_stay_throttled_while_redis_is_away(alice):
    script = (
        "from webapp import create_app\n"
        "app = create_app({'TESTING': True, 'WTF_CSRF_ENABLED': False, 'RATELIMIT_STORAGE_URI': 'redis://127.0.0.1:9/0'})\n"
        "c = app.test_client()\n"
        f"print([c.post('/login', data={{'email': {alice.email!r}, 'password': 'wrong'}}).status_code for _ in range(11)])\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == str([401] * 10 + [429]), out.stdout + out.stderr


def _csrf_session(alice):
    """A test client of an app that checks CSRF as production does, signed in as alice."""
    from webapp import create_app
    app = create_app({"TESTING": True})
    c = app.test_client()
    token = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/login").get_data(as_text=True)).group(1)
    r = c.post("/login", data={"email": alice.email, "password": alice.password, "csrf_token": token})
    assert r.status_code == 302, r.status_code
    return app, c, token


def test_an_api_write_with_the_session_cookie_needs_the_csrf_token(alice):
    app, c, token = _csrf_session(alice)
    url = f"/api/projects/{alice.team_id}/{alice.project_id}/workflows"
    r = c.post(url, json=wf_body(alice))  # what another site's page could make the browser send
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "csrf_failed"
    assert c.get(url).status_code == 200  # reads need none
    assert c.post(url, json=wf_body(alice), headers={"X-CSRFToken": token}).status_code == 201
    assert c.post(url, json=wf_body(alice, name="by-key"), headers=alice.h()).status_code == 201  # a key needs none


def test_a_new_key_and_a_webhook_secret_never_travel_in_the_session_cookie(app, client, alice):
    client.post("/login", data={"email": alice.email, "password": alice.password})
    serializer = app.session_interface.get_signing_serializer(app)

    def cookie() -> str:
        return json.dumps(serializer.loads(client.get_cookie("session").value))
    r = client.post(f"/teams/{alice.team_id}/api-keys", data={"role": "admin", "mode": "live", "name": "ci"})
    assert r.status_code == 302 and "hs_live_" not in cookie()
    page = client.get(f"/teams/{alice.team_id}/api-keys").get_data(as_text=True)
    key = re.search(r'<code id="new-key">(hs_live_[^<]+)</code>', page).group(1)
    assert client.get(f"/api/projects/{alice.team_id}/{alice.project_id}/workflows",
                      headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert key not in client.get(f"/teams/{alice.team_id}/api-keys").get_data(as_text=True)  # shown once
    r = client.post(f"/teams/{alice.team_id}/notifications",
                    data={"kind": "webhook", "name": "hook", "target": "https://hooks.example.com/x",
                          "events": ["workflow.failed"]})
    assert r.status_code == 302
    with app.app_context():
        from webapp.models import NotificationChannel
        secret = db.session.query(NotificationChannel).filter_by(name="hook").one().config["secret"]
        db.session.remove()
    assert secret not in cookie()
    assert secret in client.get(f"/teams/{alice.team_id}/notifications").get_data(as_text=True)


def test_per_workflow_metric_series_stop_at_the_cap_and_the_rest_are_summed(app, client, alice, monkeypatch):
    monkeypatch.setitem(app.config, "METRICS_MAX_WORKFLOW_SERIES", 2)
    made = [create_wf(client, alice, name=f"wf-{i}") for i in range(4)]
    text = client.get("/metrics").get_data(as_text=True)
    failing = [line for line in text.splitlines() if line.startswith("workflows_workflow_failing{")]
    assert len(failing) == 3, failing  # two of their own, one for the rest of the team
    assert any(made[0]["id"] in line for line in failing) and not any(made[3]["id"] in line for line in failing)
    assert any('workflow="(others)"' in line and line.endswith(" 0.0") for line in failing)


def test_a_worker_without_its_egress_rules_is_said_on_healthz_and_the_workers_page(app, client, alice):
    from webapp.services import hosts
    with app.app_context():  # a development worker that could not install them (allowed, and said)
        hosts.register("box:1", "box", ["default"], 2, "26.1", egress_problem="iptables: not found")
        db.session.remove()
    part = client.get("/healthz").get_json()["egress"]
    assert part["ok"] is False and "box: iptables: not found" in part["error"]
    client.post("/login", data={"email": alice.email, "password": alice.password})
    page = client.get("/workers").get_data(as_text=True)
    assert "data-egress-unguarded" in page and "iptables: not found" in page
    with app.app_context():
        hosts.register("box:1", "box", ["default"], 2, "26.1")
        db.session.remove()
    assert client.get("/healthz").get_json()["egress"]["ok"] is True
