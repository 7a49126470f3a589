"""Operating it: /metrics (read by a real Prometheus), the shipped alert rules (promtool),
silent and missed workflow events to a real webhook receiver, JSON log lines."""
from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, create_wf, free_port, serving, wait_for, wait_status
from receivers import add_channel

METRIC_NAMES = {
    "workflows_runs_total", "workflows_runs", "workflows_run_duration_seconds",
    "workflows_run_queue_wait_seconds", "workflows_schedule_lag_seconds",
    "workflows_workflow_last_success_timestamp_seconds", "workflows_workflow_next_fire_timestamp_seconds",
    "workflows_notification_deliveries_total", "workflows_worker_slots", "workflows_fires_skipped_total",
    "workflows_runs_recovered_total", "workflows_containers_reaped_total",
}


def scrape(client, **headers) -> dict:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.data[:300]
    samples: dict = {"families": set()}
    for family in text_string_to_metric_families(r.get_data(as_text=True)):
        samples["families"].add(family.name + ("_total" if family.type == "counter" else ""))
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def value(samples, name, **labels) -> float:
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == want for k, want in labels.items()))


def test_metrics_report_runs_durations_and_state_from_the_database_and_redis(client, alice, worker):
    ok = create_wf(client, alice, name="good", command=["true"], schedule="0 0 1 1 *")
    bad = create_wf(client, alice, name="bad", command=["sh", "-c", "exit 3"])
    for wf in (ok, bad):
        r = client.post(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}/trigger", headers=alice.h(), json={})
        assert wait_status(client, alice, r.get_json()["id"])["status"] in ("succeeded", "failed")
    # a run's duration is counted just after its terminal status is committed: wait for both
    wait_for(lambda: value(scrape(client), "workflows_run_duration_seconds_count") == 2, 10)
    samples = scrape(client)
    assert METRIC_NAMES <= samples["families"], METRIC_NAMES - samples["families"]
    names = {n for n in samples} | {n.rsplit("_", 1)[0] for n in samples if n.endswith(("_bucket", "_sum", "_count"))}
    assert METRIC_NAMES <= names, METRIC_NAMES - names  # every one has a sample, zeros included
    assert value(samples, "workflows_runs_total", workflow="good", status="succeeded", trigger="manual") == 1
    assert value(samples, "workflows_runs_total", workflow="bad", status="failed") == 1
    assert value(samples, "workflows_run_duration_seconds_count") == 2
    assert value(samples, "workflows_run_duration_seconds_bucket", le="+Inf") == 2
    assert value(samples, "workflows_run_queue_wait_seconds_count") == 2
    assert value(samples, "workflows_runs", state="queued") == 0
    assert value(samples, "workflows_workflow_last_success_timestamp_seconds", workflow="good") > time.time() - 120
    assert value(samples, "workflows_workflow_last_success_timestamp_seconds", workflow="bad") == 0
    assert value(samples, "workflows_workflow_next_fire_timestamp_seconds", workflow="good") > time.time()
    assert value(samples, "workflows_workflow_failing", workflow="bad") == 1
    assert value(samples, "workflows_worker_slots") >= 2
    # never a run id in a label
    assert not any(v.startswith("run_") for name, lab_values in samples.items() if name != "families"
                   for lab, _ in lab_values for v in lab.values())


def test_metrics_ask_for_the_bearer_token_when_one_is_set(app, client, alice):
    app.config["METRICS_TOKEN"] = "s3cret-token"
    try:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    finally:
        app.config["METRICS_TOKEN"] = ""


def test_shipped_alert_rules_pass_promtool():
    out = subprocess.run(["promtool", "check", "rules", str(ROOT / "docs/prometheus/alerts.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


@pytest.fixture
def served(app):
    with serving(app) as port:
        yield f"127.0.0.1:{port}"


@pytest.fixture
def prometheus(served):
    """Debian's real Prometheus, scraping the test server every second."""
    home = Path(tempfile.mkdtemp(prefix="workflows-prom-"))
    (home / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "docs/prometheus/alerts.yml")],
        "scrape_configs": [{"job_name": "workflows", "static_configs": [{"targets": [served]}]}],
    }))
    port = free_port()
    proc = subprocess.Popen(["prometheus", f"--config.file={home / 'prometheus.yml'}",
                             f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=(home / "prometheus.log").open("wb"))
    url = f"http://127.0.0.1:{port}"

    def ready():
        assert proc.poll() is None, (home / "prometheus.log").read_text()[-2000:]
        try:
            return urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200
        except OSError:
            return False
    wait_for(ready, 60)
    yield url
    proc.terminate()
    proc.wait(10)


def query(url: str, expr: str) -> list:
    with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_a_real_prometheus_scrapes_runs_and_durations(client, alice, worker, prometheus):
    ok = create_wf(client, alice, name="good", command=["true"])
    bad = create_wf(client, alice, name="bad", command=["sh", "-c", "exit 1"])
    for wf in (ok, bad, bad):
        r = client.post(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}/trigger", headers=alice.h(), json={})
        wait_status(client, alice, r.get_json()["id"])

    def seen(expr, want):
        result = query(prometheus, expr)
        return result and float(result[0]["value"][1]) == want
    wait_for(lambda: seen('sum(workflows_runs_total{status="failed",workflow="bad"})', 2), 30)
    wait_for(lambda: seen('sum(workflows_runs_total{status="succeeded",workflow="good"})', 1), 30)
    wait_for(lambda: seen("sum(workflows_run_duration_seconds_count)", 3), 30)
    wait_for(lambda: seen('sum(workflows_run_duration_seconds_bucket{le="+Inf"})', 3), 30)
    assert query(prometheus, 'up{job="workflows"}')[0]["value"][1] == "1"


# -- silent and missed workflows, end to end to a real webhook receiver ------------------------
def _events(receiver) -> list[dict]:
    return [json.loads(r["body"]) for r in receiver.on("/hook")]


def test_a_silent_workflow_is_announced_once_and_its_next_success_recovers_it(app, client, alice, receiver, procs):
    procs.worker(2)
    add_channel(client, alice, "webhook", receiver.url + "/hook",
                events=("workflow.silent", "workflow.recovered"))
    wf = create_wf(client, alice, name="nightly", command=["true"], expectSuccessWithinSec=3600)
    assert wf["expectSuccessWithinSec"] == 3600 and wf["silentSince"] is None
    from jobs.sweeper import hand_over_due_notifications
    from webapp.models.base import utcnow
    from webapp.services.silence import check_silent
    with app.app_context():
        assert check_silent(utcnow() + timedelta(seconds=3500)) == 0  # a fixed clock: not yet
        assert check_silent(utcnow() + timedelta(seconds=3700)) == 1
        assert check_silent(utcnow() + timedelta(seconds=7200)) == 0  # once, not every sweep
        hand_over_due_notifications()
    wait_for(lambda: len(_events(receiver)) == 1, 30)
    event = _events(receiver)[0]
    assert event["event"] == "workflow.silent" and event["run"] is None
    assert event["workflow"]["id"] == wf["id"] and "3600 s" in event["workflow"]["detail"]
    got = client.get(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}", headers=alice.h()).get_json()
    assert got["silentSince"] is not None

    r = client.post(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}/trigger", headers=alice.h(), json={})
    assert wait_status(client, alice, r.get_json()["id"])["status"] == "succeeded"
    wait_for(lambda: len(_events(receiver)) == 2, 30)
    recovered = _events(receiver)[1]
    assert recovered["event"] == "workflow.recovered" and recovered["run"]["id"] == r.get_json()["id"]
    got = client.get(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}", headers=alice.h()).get_json()
    assert got["silentSince"] is None and got["lastSuccessAt"] is not None
    with app.app_context():  # the success restarted the clock
        assert check_silent(utcnow() + timedelta(seconds=3500)) == 0


def test_expect_success_within_is_validated(client, alice):
    for bad in (59, 367 * 86400, "1h", True):
        r = client.post(f"/api/projects/{alice.team_id}/{alice.project_id}/workflows", headers=alice.h(),
                        json={"projectId": alice.project_id, "name": "x", "image": "busybox",
                              "expectSuccessWithinSec": bad})
        assert r.status_code == 400 and "expectSuccessWithinSec" in json.dumps(r.get_json()), r.get_json()


def test_fires_lost_to_downtime_and_forbid_skips_emit_workflow_missed(app, client, alice, receiver, procs):
    procs.worker(2)
    add_channel(client, alice, "webhook", receiver.url + "/hook", events=("workflow.missed",))
    lost = create_wf(client, alice, name="lost", schedule="*/5 * * * *", timeoutSec=60)
    busy = create_wf(client, alice, name="busy", schedule="*/5 * * * *", concurrencyPolicy="forbid",
                     command=["sleep", "30"])
    from jobs.schedule import fire_due
    from jobs.sweeper import hand_over_due_notifications
    from webapp.extensions import db
    from webapp.models import Run, Workflow
    from webapp.models.base import utcnow
    with app.app_context():
        wf = db.session.query(Workflow).filter_by(public_id=lost["id"]).one()
        # the scheduler was down for an hour: twelve instants passed, the latest 30 min ago at most
        now = utcnow()
        wf.next_run_at = now.replace(second=0, microsecond=0) - timedelta(hours=1)
        db.session.commit()
        fire_due(now.replace(minute=(now.minute // 5) * 5, second=0, microsecond=0) + timedelta(seconds=90))
        assert db.session.query(Run).filter_by(workflow_id=wf.id).count() == 0  # too old to run late
        # forbid: a run still going when the next instant comes
        b = db.session.query(Workflow).filter_by(public_id=busy["id"]).one()
        b_id = b.id
        instant = b.next_run_at
    r = client.post(f"/api/workflows/{alice.team_id}/workflows/{busy['id']}/trigger", headers=alice.h(), json={})
    wait_status(client, alice, r.get_json()["id"], statuses=("running",))
    with app.app_context():
        fire_due(instant + timedelta(seconds=1))
        skipped = db.session.query(Run).filter_by(workflow_id=b_id, trigger="schedule").one()
        assert skipped.status == "cancelled" and "forbid" in skipped.error
        hand_over_due_notifications()
    wait_for(lambda: len(_events(receiver)) == 2, 30)
    by_wf = {e["workflow"]["name"]: e for e in _events(receiver)}
    assert set(by_wf) == {"lost", "busy"} and all(e["event"] == "workflow.missed" for e in by_wf.values())
    assert by_wf["lost"]["run"] is None and "scheduler was not running" in by_wf["lost"]["workflow"]["detail"]
    assert by_wf["busy"]["run"]["id"] == skipped_id(client, alice, busy["id"])
    samples = scrape(client)
    assert value(samples, "workflows_fires_skipped_total", reason="forbid") == 1
    assert value(samples, "workflows_fires_skipped_total", reason="missed") >= 12
    cancel = client.post(f"/api/workflows/{alice.team_id}/workflows/runs/{r.get_json()['id']}/cancel",
                         headers=alice.h())
    assert cancel.status_code in (200, 202), cancel.get_json()
    assert wait_status(client, alice, r.get_json()["id"])["status"] == "cancelled"


def skipped_id(client, m, wf_id) -> str:
    runs = client.get(f"/api/workflows/{m.team_id}/workflows/{wf_id}/runs", headers=m.h()).get_json()["runs"]
    return next(r["id"] for r in runs if r["trigger"] == "schedule")


# -- JSON log lines ---------------------------------------------------------------------------
def test_log_format_json_gives_one_object_a_line_with_the_run_ids(tmp_path):
    script = (
        "import logging\n"
        "from webapp import process_log as logs\n"
        "logs.configure()\n"
        "with logs.about(run_id='run_x', workflow_id='wf_y', team_id=7):\n"
        "    logging.getLogger('jobs.runner').warning('container exited')\n"
        "logging.getLogger('jobs.cli').info('plain')\n"
    )
    out = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", script], cwd=ROOT, capture_output=True, text=True,
                         env={"LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "PATH": "/usr/bin:/bin"})
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    assert lines[0]["message"] == "container exited" and lines[0]["level"] == "WARNING"
    assert (lines[0]["run_id"], lines[0]["workflow_id"], lines[0]["team_id"]) == ("run_x", "wf_y", 7)
    assert lines[1]["message"] == "plain" and "run_id" not in lines[1]


def test_a_json_worker_logs_its_lines_as_json(procs):
    import os
    proc = subprocess.Popen([str(ROOT / ".venv/bin/flask"), "--app", "wsgi", "worker", "--slots", "1"], cwd=ROOT,
                            env={**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"},
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    procs.procs.append(proc)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    wait_for(lambda: any("worker started" in line for line in lines), 60)
    started = json.loads(next(line for line in lines if "worker started" in line))
    assert started["level"] == "INFO" and started["logger"] and started["time"]


# -- the health view ----------------------------------------------------------------------------
def _add_runs(app, wf_public_id: str, specs: list[tuple[str, float | None, float]]) -> None:
    """Finished runs straight into the database: (status, duration s or None, hours ago)."""
    from webapp.extensions import db
    from webapp.models import Run, Workflow
    from webapp.models.base import new_public_id, utcnow
    with app.app_context():
        wf = db.session.query(Workflow).filter_by(public_id=wf_public_id).one()
        now = utcnow()
        for status, seconds, hours_ago in specs:
            end = now - timedelta(hours=hours_ago)
            db.session.add(Run(public_id=new_public_id("run_"), team_id=wf.team_id, workflow_id=wf.id,
                               trigger="manual", status=status, image=wf.image, timeout_sec=60, env={},
                               queued_at=end, due_at=end, finished_at=end,
                               started_at=end - timedelta(seconds=seconds or 0) if seconds is not None else None,
                               duration_ms=int(seconds * 1000) if seconds is not None else None))
        if any(s == "succeeded" for s, _, _ in specs):
            wf.last_success_at = now
        db.session.commit()


def test_health_view_orders_failing_and_silent_first_with_rates_and_percentiles(app, client, alice):
    steady = create_wf(client, alice, name="steady")
    flaky = create_wf(client, alice, name="flaky")
    create_wf(client, alice, name="quiet", expectSuccessWithinSec=60)
    # steady: 20 successes of 3 s in the last day; flaky: 1 success in 4 today, 2 older failures
    _add_runs(app, steady["id"], [("succeeded", 3.0, 1)] * 20)
    _add_runs(app, flaky["id"], [("succeeded", 40.0, 2)] + [("failed", 1.0, 3)] * 3 + [("failed", None, 48)] * 2)
    from webapp.extensions import db
    from webapp.models import Workflow
    from webapp.models.base import utcnow
    from webapp.services.access import Principal
    from webapp.services.health import project_health
    from webapp.services.silence import check_silent
    with app.app_context():
        db.session.query(Workflow).filter_by(public_id=flaky["id"]).update({"alert_state": "failing"})
        db.session.commit()
        check_silent(utcnow() + timedelta(seconds=120))
        rows = project_health(Principal.operator({alice.team_id}), alice.team_id, alice.project_id)
        assert [(h.workflow.name, h.state) for h in rows] == [("flaky", "failing"), ("quiet", "silent"),
                                                              ("steady", "ok")]
        flaky_h, _, steady_h = rows
        assert (flaky_h.day.runs, flaky_h.day.succeeded, flaky_h.week.runs) == (4, 1, 6)
        assert steady_h.day.success_rate == 1.0 and 2.5 <= steady_h.day.percentile(0.5) <= 5.0
        assert 30 <= flaky_h.week.percentile(0.95) <= 60
    client.post("/login", data={"email": alice.email, "password": alice.password})
    page = client.get(f"/teams/{alice.team_id}/projects/{alice.project_id}/health")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.index("flaky") < html.index("quiet") < html.index("steady")
    assert "25%" in html and "100%" in html
    tab = client.get(f"/teams/{alice.team_id}/projects/{alice.project_id}/workflows").get_data(as_text=True)
    assert 'data-testid="silent-badge"' in tab and "1 silent" in tab
