"""Hostile tenants, from outside: script from data, open redirects, shared budgets and caps,
containers reaching each other or this machine, private images, SSRF through webhooks, unbounded
reads, socket floods, sessions and secrets. Real Chromium, real containers, real processes."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect
from simple_websocket import Client, ConnectionClosed
from simple_websocket import ConnectionError as HandshakeRefused

from browsing import login
from conftest import AUTH, REGISTRY, ROOT, TEST_IMAGE, create_wf, gunicorn, wait_for, wait_status
from live_client import stream_url
from runs_api import base, post_trigger

from webapp import create_app


def logs(client, m, run_id):
    """The run's stdout lines."""
    return [l["text"] for l in client.get(f"{base(m)}/runs/{run_id}/logs", headers=m.h()).get_json()["lines"]
            if l["stream"] == "stdout"]


# -- 1. no script from data -------------------------------------------------------------------
def test_a_workflow_name_is_never_run_as_script(page, server, alice):
    from playwright.sync_api import Dialog
    app = create_app()
    with app.test_client() as c:
        wf = create_wf(c, alice, name="x'+alert(7)+'")
    dialogs: list[str] = []

    def answer(dialog: Dialog):
        dialogs.append(f"{dialog.type}:{dialog.message}")
        dialog.dismiss()
    page.on("dialog", answer)
    login(page, server, alice)
    response = page.goto(f"{server}/teams/{alice.team_id}/workflows/{wf['id']}")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    page.get_by_role("button", name="Delete").click()
    expect(page.locator("h1")).to_have_text("x'+alert(7)+'")  # dismissed: still there
    assert dialogs == ["confirm:Delete x'+alert(7)+'? Runs in flight finish; it will not fire again."]


def test_no_page_carries_inline_script_or_handlers(client, alice):
    client.post("/login", data={"email": alice.email, "password": alice.password})
    wf = create_wf(client, alice)
    run = post_trigger(client, alice, wf["id"]).get_json()
    pages = ["/", f"/teams/{alice.team_id}/projects/{alice.project_id}/workflows",
             f"/teams/{alice.team_id}/workflows/{wf['id']}", f"/runs/{run['id']}",
             f"/teams/{alice.team_id}/projects/{alice.project_id}/workflows/new", "/api/docs"]
    for path in pages:
        r = client.get(path, follow_redirects=True)
        html = r.get_data(as_text=True)
        assert r.status_code == 200, path
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert not re.search(r"\son[a-z]+\s*=", html), path
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]


def test_hsts_only_when_the_site_is_https():
    assert "Strict-Transport-Security" not in create_app().test_client().get("/login").headers
    https = create_app({"BASE_URL": "https://workflows.example.com"})
    r = https.test_client().get("/login", base_url="https://workflows.example.com")
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")


# -- 2. login's next stays on this site --------------------------------------------------------
@pytest.mark.parametrize("target", ["/%09/evil.example", "//evil.example", "https://evil.example",
                                    "/\\evil.example", "/%5Cevil.example", "%2F%2Fevil.example",
                                    "/\t/evil.example", "http:evil.example"])
def test_login_never_redirects_off_site(client, alice, target):
    r = client.post(f"/login?next={target}", data={"email": alice.email, "password": alice.password})
    assert r.status_code == 302
    location = r.headers["Location"]
    assert "evil" not in location and not location.startswith("//"), location


def test_login_keeps_a_path_on_this_site(client, alice):
    r = client.post("/login?next=/runs/run_abc", data={"email": alice.email, "password": alice.password})
    assert r.headers["Location"] == "/runs/run_abc"


# -- 3. one trigger budget per team, wherever the fire comes from ------------------------------
def test_dashboard_run_clicks_spend_the_teams_budget(page, server, alice):
    app = create_app()
    with app.test_client() as c:
        create_wf(c, alice, name="clicky")
    login(page, server, alice)
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if r.url.endswith("/run") else None)
    button = page.get_by_role("button", name="Run")
    for _ in range(33):
        # one click at a time: htmx drops a click on a form whose request is still in flight
        with page.expect_response(lambda r: r.url.endswith("/run")):
            button.click()
    wait_for(lambda: len(statuses) == 33, 20)
    assert statuses.count(202) + statuses.count(200) == 30 and statuses.count(429) == 3, statuses
    expect(page.get_by_text("too many runs: wait")).to_be_visible()


def test_refused_calls_do_not_spend_the_budget(client, alice, charlie):
    wf = create_wf(client, alice)
    for _ in range(30):
        assert post_trigger(client, alice, wf["id"], key="read").status_code == 403
    for _ in range(5):
        assert client.post(f"{base(charlie)}/{wf['id']}/trigger", headers=charlie.h()).status_code == 404
    statuses = [post_trigger(client, alice, wf["id"]).status_code for _ in range(31)]
    assert statuses == [202] * 30 + [429]
    r = post_trigger(client, alice, wf["id"])
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.headers["RateLimit-Remaining"] == "0" and r.headers["RateLimit-Limit"] == "30"


def test_the_window_moves_instead_of_resetting(alice):
    """5 per 2 s: five calls just before a fixed window's end and five just after would all pass
    a fixed window; the moving window refuses the second five."""
    app = create_app({"TRIGGER_RATE_LIMIT": "5 per 2 seconds"})
    with app.test_client() as c:
        wf = create_wf(c, alice)
        while time.time() % 2 < 1.6 or time.time() % 2 > 1.7:
            time.sleep(0.01)
        first = [post_trigger(c, alice, wf["id"]).status_code for _ in range(5)]
        while time.time() % 2 > 1.0:
            time.sleep(0.01)  # the next fixed window has begun
        second = [post_trigger(c, alice, wf["id"]).status_code for _ in range(5)]
    assert first == [202] * 5 and second == [429] * 5


def test_one_team_cannot_hold_every_slot(client, alice, charlie, procs):
    procs.worker(2, env={"TEAM_MAX_RUNNING": "1"})
    procs.scheduler()
    hog = create_wf(client, alice, command=["sh", "-c", "sleep 30"], timeoutSec=60)
    mine = [post_trigger(client, alice, hog["id"]).get_json()["id"] for _ in range(3)]
    def states():
        return [client.get(f"{base(alice)}/runs/{r}", headers=alice.h()).get_json()["status"] for r in mine]
    wait_for(lambda: "running" in states(), 30)
    other = create_wf(client, charlie, command=["sh", "-c", "echo served"])
    run = post_trigger(client, charlie, other["id"]).get_json()
    done = wait_status(client, charlie, run["id"], timeout=30)
    assert done["status"] == "succeeded", done
    assert sorted(states()) == ["queued", "queued", "running"]
    for r in mine:
        client.post(f"{base(alice)}/runs/{r}/cancel", headers=alice.h())
    for r in mine:
        wait_status(client, alice, r, timeout=30)


# -- 4. containers of different runs cannot reach each other or this machine -------------------
def _container(docker_api, run_id):
    found = docker_api.containers(filters={"label": f"workflows.run={run_id}"})
    return docker_api.inspect_container(found[0]["Id"]) if found else None


def test_run_containers_cannot_reach_each_other_or_the_host(client, alice, charlie, procs, docker_api):
    from jobs.engine import RUNS_NETWORK
    procs.worker(2)
    procs.scheduler()
    listener = create_wf(client, alice, command=["sh", "-c", "echo listening; nc -l -p 8080; sleep 60"], timeoutSec=120)
    a = post_trigger(client, alice, listener["id"]).get_json()
    info = wait_for(lambda: _container(docker_api, a["id"]), 30)
    wait_for(lambda: logs(client, alice, a["id"]), 30)
    net = info["NetworkSettings"]["Networks"][RUNS_NETWORK]
    target, gateway = net["IPAddress"], net["Gateway"]
    host = socket.socket()
    host.bind(("0.0.0.0", 0))
    host.listen()
    host_port = host.getsockname()[1]
    probe = (f"nc -w 3 {target} 8080 </dev/null && echo reached-run || echo blocked-run; "
             f"nc -w 3 {gateway} {host_port} </dev/null && echo reached-host || echo blocked-host; "
             "grep CapEff /proc/self/status")
    other = create_wf(client, charlie, command=["sh", "-c", probe])
    b = post_trigger(client, charlie, other["id"]).get_json()
    done = wait_status(client, charlie, b["id"], timeout=60)
    host.close()
    assert done["status"] == "succeeded"
    out = logs(client, charlie, b["id"])
    assert out[:2] == ["blocked-run", "blocked-host"], out
    effective = int(out[2].split()[1], 16)
    assert not effective & (1 << 13) and effective & (1 << 0)  # no CAP_NET_RAW; CAP_CHOWN kept
    hc = info["HostConfig"]
    assert hc["CapDrop"] == ["ALL"] and "NET_RAW" not in (hc["CapAdd"] or [])
    assert "no-new-privileges" in hc["SecurityOpt"]
    assert hc["Memory"] == 1024 * 1024 * 1024 and hc["NanoCpus"] == 1_000_000_000  # the defaults
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "100m", "max-file": "2"}}
    client.post(f"{base(alice)}/runs/{a['id']}/cancel", headers=alice.h())
    wait_status(client, alice, a["id"], timeout=30)


def test_a_workflow_may_have_no_network_at_all(client, alice, procs):
    procs.worker(1)
    procs.scheduler()
    wf = create_wf(client, alice, command=["sh", "-c", "ls /sys/class/net"], network="none")
    assert wf["network"] == "none"
    run = post_trigger(client, alice, wf["id"]).get_json()
    assert wait_status(client, alice, run["id"], timeout=60)["status"] == "succeeded"
    assert logs(client, alice, run["id"]) == ["lo"]


def test_resource_requests_have_ceilings(client, alice):
    url = f"/api/projects/{alice.team_id}/{alice.project_id}/workflows"
    body = {"projectId": alice.project_id, "name": "big", "image": TEST_IMAGE}
    r = client.post(url, json={**body, "memoryMb": 1048576, "cpus": 256}, headers=alice.h())
    assert r.status_code == 400 and set(r.get_json()["error"]["fields"]) == {"memoryMb", "cpus"}
    wf = create_wf(client, alice)
    r = client.patch(f"{base(alice)}/{wf['id']}", json={"memoryMb": 10**6}, headers=alice.h())
    assert r.status_code == 400 and "memoryMb" in r.get_json()["error"]["fields"]
    r = client.post(url, json={**body, "network": "host"}, headers=alice.h())
    assert r.status_code == 400 and "network" in r.get_json()["error"]["fields"]


# -- 5. private images stay private ------------------------------------------------------------
def test_a_private_image_on_the_engine_is_refused_to_a_team_without_credentials(client, alice, charlie,
                                                                               private_image, procs):
    procs.worker(1)
    procs.scheduler()
    url = f"/api/projects/{alice.team_id}/{alice.project_id}/registry-credentials"
    assert client.post(url, json={"registry": REGISTRY, **AUTH}, headers=alice.h()).status_code == 201
    own = create_wf(client, alice, image=private_image, command=["sh", "-c", "echo mine"])
    run = post_trigger(client, alice, own["id"]).get_json()
    assert wait_status(client, alice, run["id"], timeout=60)["status"] == "succeeded"  # now on the engine
    theirs = create_wf(client, charlie, image=private_image, command=["sh", "-c", "echo stolen"])
    run = post_trigger(client, charlie, theirs["id"]).get_json()
    done = wait_status(client, charlie, run["id"], timeout=60)
    assert done["status"] == "failed" and done["startedAt"] is None
    assert f"the registry {REGISTRY} did not let this project use {private_image}" in done["error"]
    assert "stolen" not in logs(client, charlie, run["id"])


# -- 6. no SSRF through webhooks ---------------------------------------------------------------
@pytest.mark.parametrize("target", ["https://169.254.169.254/latest/meta-data", "https://[fe80::1]/x",
                                    "https://224.0.0.1/x", "https://0.0.0.0/x"])
def test_never_allowed_webhook_targets_are_refused(client, alice, target):
    r = client.post(f"/api/teams/{alice.team_id}/notification-channels", headers=alice.h(),
                    json={"kind": "webhook", "name": "x", "target": target})
    assert r.status_code == 400 and "target" in r.get_json()["error"]["fields"], r.get_json()


def test_private_targets_are_refused_in_production_unless_allowed(alice):
    strict = create_app({"NOTIFY_ALLOW_PRIVATE": False, "NOTIFY_ALLOW_HTTP_LOCALHOST": False})
    with strict.test_client() as c:
        for target in ("https://10.1.2.3/hook", "https://127.0.0.1/hook", "https://localhost/hook",
                       "https://192.168.1.1/hook"):
            r = c.post(f"/api/teams/{alice.team_id}/notification-channels", headers=alice.h(),
                       json={"kind": "slack", "name": "x", "target": target})
            assert r.status_code == 400, target
    allowed = create_app({"NOTIFY_ALLOW_PRIVATE": False, "NOTIFY_ALLOWED_HOSTS": frozenset({"10.1.2.3"})})
    with allowed.test_client() as c:
        r = c.post(f"/api/teams/{alice.team_id}/notification-channels", headers=alice.h(),
                   json={"kind": "slack", "name": "x", "target": "https://10.1.2.3/hook"})
        assert r.status_code == 201


def test_delivery_checks_the_address_again_and_never_echoes_the_body(app):
    from webapp.notify import TRANSPORTS, Message, TransportError
    message = Message(event="test", workflow_name="w", workflow_id="wf_x", run_id="run_x", status="failed",
                      exit_code=1, attempts=1, error=None, url="http://x/", finished_at=None)
    strict = create_app({"NOTIFY_ALLOW_PRIVATE": False})
    with strict.app_context():
        with pytest.raises(TransportError) as e:
            TRANSPORTS["slack"]({"url": "https://127.0.0.1:9/hook"}, strict.config).notify(message)
    assert e.value.permanent and "private address" in e.value.message

    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Secretive(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b"internal-admin-page-contents")

        def log_message(self, *args):
            pass
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Secretive)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with app.app_context():
            with pytest.raises(TransportError) as e:
                TRANSPORTS["slack"]({"url": f"http://127.0.0.1:{srv.server_address[1]}/x"}, app.config).notify(message)
    finally:
        srv.shutdown()
    assert e.value.status == 400 and "internal-admin-page" not in e.value.message


def test_the_test_button_is_rate_limited_and_passwords_are_not_shown(client, alice):
    r = client.post(f"/api/teams/{alice.team_id}/notification-channels", headers=alice.h(),
                    json={"kind": "slack", "name": "x", "target": "https://bob:hunter2@hooks.example.com/services/T1"})
    channel = r.get_json()
    assert "hunter2" not in json.dumps(channel) and "bob" not in channel["target"]
    assert channel["target"] == "https://hooks.example.com/…"
    url = f"/api/teams/{alice.team_id}/notification-channels/{channel['id']}/test"
    assert [client.post(url, headers=alice.h()).status_code for _ in range(7)] == [202] * 6 + [429]


# -- 7. bounded reads --------------------------------------------------------------------------
def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_reading_a_million_line_log_keeps_the_web_process_flat(app, client, alice):
    from sqlalchemy import text

    from webapp.extensions import db
    from webapp.models import Run
    wf = create_wf(client, alice)
    run_id = post_trigger(client, alice, wf["id"]).get_json()["id"]
    with app.app_context():
        # A million lines, each a block of its own: five times the default LOG_CAP_LINES, as many
        # rows as a log can have; read whole it would take far more than the 40 MiB allowed below.
        lines = 1_000_000
        run = db.session.query(Run).filter_by(public_id=run_id).one()
        if db.engine.dialect.name == "postgresql":
            fill = ("INSERT INTO run_log_blocks (run_id, first_seq, last_seq, stream, text, ts) "
                    "SELECT :run, g, g, 'stdout', '', now() FROM generate_series(0, :last) g")
        else:
            fill = ("INSERT INTO run_log_blocks (run_id, first_seq, last_seq, stream, text, ts) "
                    "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < :last) "
                    "SELECT :run, x, x, 'stdout', '', CURRENT_TIMESTAMP FROM c")
        db.session.execute(text(fill), {"run": run.id, "last": lines - 1})
        db.session.execute(text("UPDATE runs SET status = 'succeeded' WHERE id = :run"), {"run": run.id})
        db.session.commit()
        if db.engine.dialect.name == "postgresql":  # what autovacuum does after a bulk load
            db.session.execute(text("ANALYZE run_log_blocks"))
            db.session.commit()
    with gunicorn(WEB_WORKERS="1", WEB_CONNECTIONS="4") as (web, base_url):
        url = f"{base_url}/api/workflows/{alice.team_id}/workflows/runs/{run_id}/logs"
        head = {"Authorization": f"Bearer {alice.full}"}
        wait_for(lambda: _get(url + "?limit=1", head) == 200, 60)
        worker_pid = int(subprocess.run(["pgrep", "-P", str(web.pid)], capture_output=True, text=True).stdout.split()[0])
        before = _rss_kib(worker_pid)
        with requests.get(url + "?format=text", headers=head, stream=True, timeout=300) as r:
            got = sum(chunk.count(b"\n") for chunk in r.iter_content(1 << 16))
        assert got == lines
        page = requests.get(url, headers=head, timeout=60).json()
        assert len(page["lines"]) == 10000 and page["nextAfterSeq"] == 9999
        page = requests.get(url + f"?afterSeq={lines - 3}", headers=head, timeout=60).json()
        assert [l["seq"] for l in page["lines"]] == [lines - 2, lines - 1] and page["nextAfterSeq"] is None
        ws = Client.connect(url.replace("http://", "ws://") + "/stream", headers=head)
        for _ in range(20000):
            ws.receive(timeout=10)
        ws.close()
        after = _rss_kib(worker_pid)
    assert after - before < 40 * 1024, (before, after)  # KiB: flat, whatever the log's length


def _get(url, headers) -> int | None:
    try:
        return requests.get(url, headers=headers, timeout=5).status_code
    except requests.RequestException:
        return None


def test_log_pages_are_validated(client, alice):
    wf = create_wf(client, alice)
    run_id = post_trigger(client, alice, wf["id"]).get_json()["id"]
    for query in ("limit=0", "limit=10001", "afterSeq=x", "afterSeq=-2"):
        r = client.get(f"{base(alice)}/runs/{run_id}/logs?{query}", headers=alice.h())
        assert r.status_code == 400, query


# -- 8. websockets cannot exhaust the web process ----------------------------------------------
def _stream(ws_server, m, run_id, key="full"):
    return Client.connect(stream_url(ws_server, m, run_id), headers=m.h(key))


def test_the_17th_socket_of_a_team_is_refused(app, client, alice, ws_server):
    from webapp.services.access import Principal
    from webapp.services.keys import create_key
    app.config["WS_MAX_PER_PROCESS"] = 100  # this test is about the team's and the key's caps
    wf = create_wf(client, alice)
    run_id = post_trigger(client, alice, wf["id"]).get_json()["id"]  # no worker: stays queued, streams stay open
    with app.app_context():
        keys = [create_key(Principal.operator({alice.team_id}), alice.team_id, "admin", "live")[1] for _ in range(3)]
    open_: list = []
    try:
        for _ in range(8):
            open_.append(Client.connect(stream_url(ws_server, alice, run_id), headers={"Authorization": f"Bearer {keys[0]}"}))
        with pytest.raises(HandshakeRefused) as e:  # the 9th of one key
            Client.connect(stream_url(ws_server, alice, run_id), headers={"Authorization": f"Bearer {keys[0]}"})
        assert "429" in str(e.value)
        for _ in range(8):
            open_.append(Client.connect(stream_url(ws_server, alice, run_id), headers={"Authorization": f"Bearer {keys[1]}"}))
        with pytest.raises(HandshakeRefused) as e:  # the 17th of the team
            Client.connect(stream_url(ws_server, alice, run_id), headers={"Authorization": f"Bearer {keys[2]}"})
        assert "429" in str(e.value)
    finally:
        for ws in open_:
            ws.close()
    wait_for(lambda: _opens(ws_server, alice, run_id, keys[2]), 10)  # closed ones free their places


def test_open_streams_cost_the_database_a_few_statements_a_second_however_many_they_are(app, client, alice,
                                                                                         ws_server):
    """Between frames, a stream needs its run's status and its credentials: the process reads them
    for all its streams at once, so eight idle streams cost what one does."""
    from sqlalchemy import event
    from webapp.extensions import db
    wf = create_wf(client, alice)
    run_id = post_trigger(client, alice, wf["id"]).get_json()["id"]  # no worker: stays queued
    streams = [Client.connect(stream_url(ws_server, alice, run_id), headers=alice.h()) for _ in range(8)]
    statements = []
    with app.app_context():
        engine = db.engine
    count = lambda *args: statements.append(time.monotonic())  # noqa: E731
    try:
        time.sleep(1.5)  # past the streams' first reads
        event.listen(engine, "before_cursor_execute", count)
        time.sleep(4)
        event.remove(engine, "before_cursor_execute", count)
        # one run, one key: 2 a second, 4 or 5 polls in the window (a stream each: 8 x 1.5 a second)
        assert 2 <= len(statements) <= 5 * 3, len(statements)
        assert all(ws.connected for ws in streams)
    finally:
        for ws in streams:
            ws.close()


def _opens(ws_server, m, run_id, key) -> bool:
    try:
        Client.connect(stream_url(ws_server, m, run_id), headers={"Authorization": f"Bearer {key}"}).close()
        return True
    except HandshakeRefused:
        return False


def _closed_within(ws, seconds: float) -> bool:
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            ws.receive(timeout=0.5)
    except ConnectionClosed:
        return True
    return False


def test_a_revoked_key_ends_its_open_stream(app, client, alice, ws_server):
    from webapp.services.access import Principal
    from webapp.services.keys import create_key, revoke
    wf = create_wf(client, alice)
    run_id = post_trigger(client, alice, wf["id"]).get_json()["id"]
    with app.app_context():
        key, raw = create_key(Principal.operator({alice.team_id}), alice.team_id, "admin", "live")
        key_id = key.id
    ws = Client.connect(stream_url(ws_server, alice, run_id), headers={"Authorization": f"Bearer {raw}"})
    assert not _closed_within(ws, 1)
    with app.app_context():
        revoke(Principal.operator({alice.team_id}), alice.team_id, key_id)
    assert _closed_within(ws, 5)


def test_signing_out_ends_the_sessions_streams_and_remember_cookies(ws_server, alice):
    http = ws_server.replace("ws://", "http://")
    s = requests.Session()
    r = s.post(f"{http}/login", data={"email": alice.email, "password": alice.password, "remember": "on"},
               allow_redirects=False)
    assert r.status_code == 302 and "remember_token" in s.cookies
    app = create_app()
    with app.test_client() as c:
        wf = create_wf(c, alice)
        run_id = post_trigger(c, alice, wf["id"]).get_json()["id"]
    cookies = "; ".join(f"{k}={v}" for k, v in s.cookies.items())
    remember_only = {"Cookie": f"remember_token={s.cookies['remember_token']}"}
    ws = Client.connect(stream_url(ws_server, alice, run_id), headers={"Cookie": cookies})
    assert not _closed_within(ws, 1)
    s.post(f"{http}/logout", headers={"X-CSRFToken": ""})
    assert _closed_within(ws, 5)
    # the old remember cookie no longer signs anyone in
    assert "/login" in requests.get(f"{http}/", headers=remember_only, allow_redirects=False).headers["Location"]


def test_without_remember_me_there_is_no_remember_cookie(ws_server, alice):
    http = ws_server.replace("ws://", "http://")
    s = requests.Session()
    s.post(f"{http}/login", data={"email": alice.email, "password": alice.password}, allow_redirects=False)
    assert "remember_token" not in s.cookies and "session" in s.cookies


def test_a_client_message_past_the_limit_closes_the_socket(client, alice, ws_server):
    wf = create_wf(client, alice)
    run_id = post_trigger(client, alice, wf["id"]).get_json()["id"]
    ws = Client.connect(stream_url(ws_server, alice, run_id), headers=alice.h())
    ws.send("x" * 100_000)
    assert _closed_within(ws, 5)


# -- 9. secrets and sessions -------------------------------------------------------------------
def test_an_expired_key_ends_its_open_stream(app, client, alice, ws_server):
    from datetime import timedelta

    from webapp.extensions import db
    from webapp.models import ApiKey
    from webapp.models.base import utcnow
    from webapp.services.access import Principal
    from webapp.services.keys import create_key
    wf = create_wf(client, alice)
    run_id = post_trigger(client, alice, wf["id"]).get_json()["id"]
    with app.app_context():
        key, raw = create_key(Principal.operator({alice.team_id}), alice.team_id, "admin", "live", expires_in_days=1)
        key_id = key.id
    ws = Client.connect(stream_url(ws_server, alice, run_id), headers={"Authorization": f"Bearer {raw}"})
    assert not _closed_within(ws, 1)
    with app.app_context():
        db.session.get(ApiKey, key_id).expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert _closed_within(ws, 5)


def test_without_secret_key_a_random_one_is_kept_in_var(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    key_file = ROOT / "var" / "secret_key"
    code = "from webapp import create_app; print(create_app().config['SECRET_KEY'])"
    first = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", code], cwd=ROOT, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    second = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=True).stdout.strip()
    from webapp.config import DEV_SECRET
    assert first == second != DEV_SECRET and len(first) >= 48
    assert key_file.read_text().strip() == first
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_a_password_change_ends_existing_sessions(client, alice):
    from webapp.services.teams import set_password
    client.post("/login", data={"email": alice.email, "password": alice.password})
    assert client.get("/").status_code == 302 and "/login" not in client.get("/").headers["Location"]
    app = create_app()
    with app.app_context():
        set_password(alice.email, "a-brand-new-password")
    assert "/login" in client.get("/").headers["Location"]


@pytest.mark.serial  # compares two timings: other workers' load would be the noise it measures
def test_sign_in_takes_as_long_for_an_unknown_email(client, alice):
    def timed(email):
        t = time.perf_counter()
        client.post("/login", data={"email": email, "password": "not-the-password"})
        return time.perf_counter() - t
    known = min(timed(alice.email) for _ in range(3))
    unknown = min(timed("nobody@example.test") for _ in range(3))
    assert 0.5 < unknown / known < 2, (known, unknown)


def test_trusted_proxies_key_the_login_limit_on_the_real_client(alice):
    app = create_app({"TRUSTED_PROXIES": 1, "WTF_CSRF_ENABLED": False})
    with app.test_client() as c:
        bad = {"email": alice.email, "password": "wrong"}
        codes = [c.post("/login", data=bad, headers={"X-Forwarded-For": "198.51.100.7"}).status_code
                 for _ in range(11)]
        assert codes == [401] * 10 + [429]
        other = {"email": "someone-else@example.test", "password": "wrong"}  # the account is held too
        assert c.post("/login", data=other, headers={"X-Forwarded-For": "198.51.100.8"}).status_code == 401


def test_test_keys_cannot_remove_what_production_uses(client, alice):
    url = f"/api/projects/{alice.team_id}/{alice.project_id}/registry-credentials"
    cred = client.post(url, json={"registry": REGISTRY, **AUTH}, headers=alice.h()).get_json()
    other = client.post(url, json={"registry": "registry.example.com", **AUTH}, headers=alice.h()).get_json()
    create_wf(client, alice, image=f"{REGISTRY}/private/anything:1")  # in Production
    assert client.delete(f"{url}/{cred['id']}", headers=alice.h("test")).status_code == 403
    assert client.delete(f"{url}/{other['id']}", headers=alice.h("test")).status_code == 204
    channel = client.post(f"/api/teams/{alice.team_id}/notification-channels", headers=alice.h(),
                          json={"kind": "slack", "name": "x", "target": "https://hooks.example.com/x"}).get_json()
    channel_url = f"/api/teams/{alice.team_id}/notification-channels/{channel['id']}"
    assert client.delete(channel_url, headers=alice.h("test")).status_code == 403
    assert client.delete(channel_url, headers=alice.h()).status_code == 204


def test_env_is_encrypted_at_rest_and_masked_for_read_keys(app, client, alice):
    from sqlalchemy import text

    from webapp.extensions import db
    wf = create_wf(client, alice, env={"API_TOKEN": "tok-very-secret", "REGION": "eu-west"})
    run = client.post(f"{base(alice)}/{wf['id']}/trigger", json={"env": {"DB_PASSWORD": "pw-very-secret"}},
                      headers=alice.h()).get_json()
    with app.app_context():
        raw = b"".join(bytes(v) for (v,) in db.session.execute(text("SELECT env FROM workflows")).all())
        raw += b"".join(bytes(v) for (v,) in db.session.execute(text("SELECT env FROM runs")).all())
    assert b"very-secret" not in raw and b"eu-west" not in raw
    read_wf = client.get(f"{base(alice)}/{wf['id']}", headers=alice.h("read")).get_json()
    assert read_wf["env"] == {"API_TOKEN": "••••••••", "REGION": "eu-west"}
    read_run = client.get(f"{base(alice)}/runs/{run['id']}", headers=alice.h("read")).get_json()
    assert read_run["env"]["DB_PASSWORD"] == "••••••••"
    assert client.get(f"{base(alice)}/{wf['id']}", headers=alice.h()).get_json()["env"]["API_TOKEN"] == "tok-very-secret"


# -- 10. nesting -------------------------------------------------------------------------------
def test_a_deeply_nested_body_is_a_400(client, alice):
    url = f"/api/projects/{alice.team_id}/{alice.project_id}/workflows"
    for depth in (40, 10_000):
        r = client.post(url, data="[" * depth + "]" * depth, content_type="application/json", headers=alice.h())
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_json"
